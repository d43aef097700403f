//! Templates as pages show them: the template module's tokens, each with a
//! class for its kind, and each include linking to the version it resolves
//! to. The page template writes every piece's text escaped; nothing here is
//! HTML.

use std::collections::HashMap;

use serde::Serialize;

use super::prompt_url;
use crate::domain::Engine;
use crate::template::highlight::{tokens, TokenKind};

#[derive(Serialize)]
pub struct Piece {
    /// `text`, `variable`, `partial`, `tag` or `comment`: the CSS class.
    kind: &'static str,
    text: String,
    /// A partial's version page, when it resolves.
    href: Option<String>,
    /// The version a partial resolves to, said beside it.
    resolved: Option<String>,
}

/// `source` in pieces; `partials` maps an include's key to the version it
/// resolves to.
pub fn pieces(
    engine: Engine,
    source: &str,
    partials: &HashMap<String, semver::Version>,
) -> Vec<Piece> {
    tokens(engine, source)
        .into_iter()
        .map(|token| {
            let (kind, href, resolved) = match &token.kind {
                TokenKind::Text => ("text", None, None),
                TokenKind::Variable => ("variable", None, None),
                TokenKind::Tag => ("tag", None, None),
                TokenKind::Comment => ("comment", None, None),
                TokenKind::Include(include) => match partials.get(&include.key()) {
                    Some(version) => (
                        "partial",
                        Some(format!(
                            "{}/versions/{version}",
                            prompt_url(&include.prompt)
                        )),
                        Some(version.to_string()),
                    ),
                    None => ("partial", None, None),
                },
            };
            Piece {
                kind,
                text: token.text,
                href,
                resolved,
            }
        })
        .collect()
}
