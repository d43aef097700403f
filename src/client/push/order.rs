//! The order prompts are pushed in: the prompts a folder includes before
//! the prompts that include them.

use std::collections::{BTreeSet, HashMap};

use crate::client::files::LoadedPrompt;

/// The prompts in layers: a prompt comes after every prompt of the folder
/// it includes, so a layer's prompts only include prompts of earlier layers
/// (or prompts the folder does not hold). Prompts on an include cycle come
/// last, together, for the server to refuse.
pub(super) fn push_order(prompts: &[LoadedPrompt]) -> Vec<Vec<&LoadedPrompt>> {
    let index: HashMap<&str, usize> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.as_str(), i))
        .collect();
    let includes: Vec<BTreeSet<usize>> = prompts
        .iter()
        .enumerate()
        .map(|(i, prompt)| {
            crate::template::includes(prompt.content.engine, &prompt.content.body)
                .unwrap_or_default()
                .iter()
                .filter_map(|include| index.get(include.prompt.as_str()).copied())
                .filter(|&j| j != i)
                .collect()
        })
        .collect();
    let mut placed = vec![false; prompts.len()];
    let mut layers = Vec::new();
    while placed.iter().any(|p| !p) {
        let ready: Vec<usize> = (0..prompts.len())
            .filter(|&i| !placed[i] && includes[i].iter().all(|&j| placed[j]))
            .collect();
        let layer = if ready.is_empty() {
            (0..prompts.len()).filter(|&i| !placed[i]).collect()
        } else {
            ready
        };
        for &i in &layer {
            placed[i] = true;
        }
        layers.push(layer.into_iter().map(|i| &prompts[i]).collect());
    }
    layers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers_of(files: &[(&str, &str)]) -> Vec<Vec<String>> {
        let dir = tempfile::tempdir().expect("dir");
        for (name, template) in files {
            let path = crate::client::files::path_for(dir.path(), name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, format!("template: {template:?}\n")).expect("write");
        }
        let checked = crate::client::validate::check_dir(dir.path()).expect("read");
        assert!(checked.failed.is_empty(), "{:?}", checked.diagnostics);
        push_order(&checked.prompts)
            .into_iter()
            .map(|layer| layer.iter().map(|p| p.name.to_string()).collect())
            .collect()
    }

    #[test]
    fn included_prompts_come_first_and_cycles_last() {
        let layers = layers_of(&[
            ("a", "{{> b}} {{> elsewhere}}"),
            ("b", "{{> c@1.0.0}}"),
            ("c", "plain"),
            ("d", "plain"),
            ("x", "{{> y}}"),
            ("y", "{{> x}}"),
            ("self", "{{> self}}"),
        ]);
        assert_eq!(
            layers,
            vec![
                vec!["c".to_owned(), "d".to_owned(), "self".to_owned()],
                vec!["b".to_owned()],
                vec!["a".to_owned()],
                vec!["x".to_owned(), "y".to_owned()],
            ]
        );
    }
}
