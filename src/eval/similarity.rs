//! Text similarity that reproduces reference Python implementations float
//! for float: rapidfuzz's normalised Levenshtein, the SQuAD v1.1 token F1,
//! `rouge-score`'s ROUGE-L and `sacrebleu`'s sentence BLEU, with their
//! tokenizers. Metrics call these; nothing here parses params or knows about
//! samples. `tests/fixtures/metrics/` holds the script and the values that
//! the tests in `metrics` check these against.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;

/// Python's `str.isspace`, which `str.split()` splits on: Unicode White_Space
/// plus the separators U+001C..U+001F. The reference implementations split
/// this way, so matching them needs it.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

fn py_split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_py_space).filter(|t| !t.is_empty())
}

pub(super) fn levenshtein_similarity(a: &str, b: &str) -> f64 {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let longest = a.len().max(b.len());
    if longest == 0 {
        return 1.0;
    }
    1.0 - levenshtein_distance(&a, &b) as f64 / longest as f64
}

/// Unit-cost edit distance, one DP row at a time: O(|a|·|b|) time after
/// dropping the common prefix and suffix (which never change the distance).
fn levenshtein_distance(a: &[char], b: &[char]) -> usize {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let (a, b) = (&a[prefix..], &b[prefix..]);
    let suffix = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (a, b) = (&a[..a.len() - suffix], &b[..b.len() - suffix]);
    let (long, short) = if a.len() >= b.len() { (a, b) } else { (b, a) };
    let mut row: Vec<usize> = (0..=short.len()).collect();
    for (i, lc) in long.iter().enumerate() {
        let mut diagonal = i;
        row[0] = i + 1;
        for (j, sc) in short.iter().enumerate() {
            let substitute = diagonal + usize::from(lc != sc);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[short.len()]
}

/// SQuAD v1.1 `normalize_answer(s).split()`: lower, remove punctuation
/// (Python's `string.punctuation`, which is exactly ASCII punctuation),
/// remove articles, split on whitespace.
fn squad_tokens(s: &str) -> Vec<String> {
    let lowered = s.to_lowercase();
    let no_punct: String = lowered
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    let no_articles = remove_articles(&no_punct);
    py_split(&no_articles).map(str::to_owned).collect()
}

/// Python's `re.sub(r'\b(a|an|the)\b', ' ', text)`. The alternatives are all
/// word characters bounded by `\b`, so a match is exactly a whole word (a
/// maximal run of word characters) spelt a, an or the. Python's `\w` is
/// `str.isalnum()` or `_`; Rust's `char::is_alphanumeric` is the closest
/// match, closer than the `regex` crate's `\b` (which counts combining marks
/// as word characters, so it would keep the "the" in "the\u{301}").
fn remove_articles(text: &str) -> String {
    fn push_word(out: &mut String, word: &str) {
        if matches!(word, "a" | "an" | "the") {
            out.push(' ');
        } else {
            out.push_str(word);
        }
    }
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut word_start = None;
    for (i, c) in text.char_indices() {
        if is_word(c) {
            word_start.get_or_insert(i);
        } else {
            if let Some(start) = word_start.take() {
                push_word(&mut out, &text[start..i]);
            }
            out.push(c);
        }
    }
    if let Some(start) = word_start {
        push_word(&mut out, &text[start..]);
    }
    out
}

/// SQuAD v1.1 `f1_score(prediction, ground_truth)`.
pub(super) fn squad_f1(prediction: &str, ground_truth: &str) -> f64 {
    let predicted = squad_tokens(prediction);
    let truth = squad_tokens(ground_truth);
    let mut available: HashMap<&str, usize> = HashMap::new();
    for token in &truth {
        *available.entry(token.as_str()).or_default() += 1;
    }
    let mut same = 0usize;
    for token in &predicted {
        if let Some(left) = available.get_mut(token.as_str()).filter(|n| **n > 0) {
            *left -= 1;
            same += 1;
        }
    }
    if same == 0 {
        return 0.0;
    }
    let precision = same as f64 / predicted.len() as f64;
    let recall = same as f64 / truth.len() as f64;
    (2.0 * precision * recall) / (precision + recall)
}

/// `rouge_score.tokenize.tokenize(text, None)`: lowercase, then the runs of
/// `[a-z0-9]` are the tokens.
fn rouge_tokens(lowered: &str) -> Vec<&str> {
    lowered
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|t| !t.is_empty())
        .collect()
}

/// `rouge_scorer._score_lcs(target, prediction).fmeasure`.
pub(super) fn rouge_l(output: &str, expected: &str) -> f64 {
    let (output, expected) = (output.to_lowercase(), expected.to_lowercase());
    let prediction = rouge_tokens(&output);
    let target = rouge_tokens(&expected);
    if target.is_empty() || prediction.is_empty() {
        return 0.0;
    }
    let lcs = lcs_len(&target, &prediction);
    let precision = lcs as f64 / prediction.len() as f64;
    let recall = lcs as f64 / target.len() as f64;
    if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    }
}

fn lcs_len(a: &[&str], b: &[&str]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y {
                prev[j] + 1
            } else {
                prev[j + 1].max(cur[j])
            };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

const BLEU_MAX_ORDER: usize = 4;

// The three regex passes of sacrebleu's `TokenizerRegexp`, applied in order
// with `re.sub` semantics (leftmost, non-overlapping), which `replace_all`
// shares. Constant patterns: failing to compile is a bug, caught by any test.
static PERIOD_COMMA_AFTER_NON_DIGIT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"([^0-9])([\.,])").expect("constant regex"));
static PERIOD_COMMA_BEFORE_NON_DIGIT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"([\.,])([^0-9])").expect("constant regex"));
static DASH_AFTER_DIGIT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"([0-9])(-)").expect("constant regex"));

/// The first pass of `TokenizerRegexp`, `[\{-\~\[-\` -\&\(-\+\:-\@\/]`: ASCII
/// punctuation except `'`, `,`, `-` and `.` (and the space), each of which
/// the pattern pads with spaces one character at a time.
fn is_13a_symbol(c: char) -> bool {
    matches!(c, '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/')
}

/// sacrebleu's `BLEU._preprocess_segment` with the default `Tokenizer13a`:
/// rstrip, the mteval-v13a replacements, then `TokenizerRegexp`.
fn tokenize_13a(line: &str) -> Vec<String> {
    let line = line.trim_end_matches(is_py_space);
    let mut line = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if line.contains('&') {
        line = line
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let mut padded = String::with_capacity(line.len() * 2 + 2);
    padded.push(' ');
    for c in line.chars() {
        if is_13a_symbol(c) {
            padded.push(' ');
            padded.push(c);
            padded.push(' ');
        } else {
            padded.push(c);
        }
    }
    padded.push(' ');
    let s = PERIOD_COMMA_AFTER_NON_DIGIT.replace_all(&padded, "$1 $2 ");
    let s = PERIOD_COMMA_BEFORE_NON_DIGIT.replace_all(&s, " $1 $2");
    let s = DASH_AFTER_DIGIT.replace_all(&s, "$1 $2 ");
    py_split(&s).map(str::to_owned).collect()
}

fn ngram_counts(tokens: &[String]) -> HashMap<&[String], usize> {
    let mut counts = HashMap::new();
    for n in 1..=BLEU_MAX_ORDER {
        for gram in tokens.windows(n) {
            *counts.entry(gram).or_insert(0) += 1;
        }
    }
    counts
}

/// `sacrebleu.sentence_bleu(hypothesis, [reference]).score / 100`, following
/// `BLEU.compute_bleu` step for step (same float operations in the same
/// order) with smooth_method "exp" and effective_order.
pub(super) fn sentence_bleu(hypothesis: &str, reference: &str) -> f64 {
    let hyp = tokenize_13a(hypothesis);
    let reference = tokenize_13a(reference);
    let (sys_len, ref_len) = (hyp.len(), reference.len());
    let ref_counts = ngram_counts(&reference);
    let mut correct = [0usize; BLEU_MAX_ORDER];
    let mut total = [0usize; BLEU_MAX_ORDER];
    for (gram, count) in ngram_counts(&hyp) {
        let order = gram.len() - 1;
        total[order] += count;
        if let Some(&in_ref) = ref_counts.get(gram) {
            correct[order] += count.min(in_ref);
        }
    }

    let brevity_penalty = if sys_len >= ref_len {
        1.0
    } else if sys_len > 0 {
        (1.0 - ref_len as f64 / sys_len as f64).exp()
    } else {
        0.0
    };
    if correct.iter().all(|&c| c == 0) {
        return 0.0;
    }
    let mut precisions = [0.0f64; BLEU_MAX_ORDER];
    let mut smooth = 1.0f64;
    let mut effective_order = BLEU_MAX_ORDER;
    for n in 0..BLEU_MAX_ORDER {
        if total[n] == 0 {
            break;
        }
        effective_order = n + 1;
        precisions[n] = if correct[n] == 0 {
            smooth *= 2.0;
            100.0 / (smooth * total[n] as f64)
        } else {
            100.0 * correct[n] as f64 / total[n] as f64
        };
    }
    // Every precision up to the effective order is positive (exp smoothing),
    // so sacrebleu's floor for log(0) never applies.
    let log_sum: f64 = precisions[..effective_order].iter().map(|p| p.ln()).sum();
    brevity_penalty * (log_sum / effective_order as f64).exp() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenize_13a_matches_sacrebleu() {
        // Expected strings from sacrebleu 2.6.0's Tokenizer13a on each input.
        let table = [
            ("Hello, world!", "Hello , world !"),
            ("3.14 and 1,000 and end.", "3.14 and 1,000 and end ."),
            ("x.. y", "x . . y"),
            ("1-2 a-b", "1 - 2 a-b"),
            (
                "&lt;b&gt; &amp; &quot;q&quot; don't",
                "< b > & \" q \" don't",
            ),
            ("hy-\nphen\nnext  ", "hyphen next"),
            ("<skipped>ok", "ok"),
        ];
        for (input, want) in table {
            assert_eq!(tokenize_13a(input).join(" "), want, "{input:?}");
        }
    }
}
