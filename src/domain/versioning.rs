//! How the server numbers versions: first 1.0.0, then a patch bump, the bump
//! asked for, or an explicit version that must be greater than the latest.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Bump {
    Patch,
    Minor,
    Major,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionRuleError {
    #[error("version {requested} is not greater than the latest version {latest}")]
    NotGreater {
        requested: semver::Version,
        latest: semver::Version,
    },
}

pub const FIRST_VERSION: semver::Version = semver::Version::new(1, 0, 0);

/// The version number a new version gets. `explicit` wins over `bump`; callers
/// refuse requests that give both.
pub fn next_version(
    latest: Option<&semver::Version>,
    bump: Option<Bump>,
    explicit: Option<&semver::Version>,
) -> Result<semver::Version, VersionRuleError> {
    match (latest, explicit) {
        (None, Some(v)) => Ok(v.clone()),
        (None, None) => Ok(FIRST_VERSION),
        (Some(latest), Some(v)) if v > latest => Ok(v.clone()),
        (Some(latest), Some(v)) => Err(VersionRuleError::NotGreater {
            requested: v.clone(),
            latest: latest.clone(),
        }),
        (Some(latest), None) => Ok(bumped(latest, bump.unwrap_or(Bump::Patch))),
    }
}

fn bumped(v: &semver::Version, bump: Bump) -> semver::Version {
    match bump {
        Bump::Patch if v.pre.is_empty() => semver::Version::new(v.major, v.minor, v.patch + 1),
        // 1.2.0-rc.1 patch-bumps to its release, 1.2.0.
        Bump::Patch => semver::Version::new(v.major, v.minor, v.patch),
        Bump::Minor => semver::Version::new(v.major, v.minor + 1, 0),
        Bump::Major => semver::Version::new(v.major + 1, 0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> semver::Version {
        semver::Version::parse(s).expect("test semver")
    }

    /// latest, bump, explicit version, expected result.
    type Case = (
        Option<&'static str>,
        Option<Bump>,
        Option<&'static str>,
        &'static str,
    );

    #[test]
    fn numbering_follows_the_rules() {
        let cases: [Case; 8] = [
            (None, None, None, "1.0.0"),
            (None, Some(Bump::Major), None, "1.0.0"),
            (None, None, Some("0.3.0"), "0.3.0"),
            (Some("1.0.0"), None, None, "1.0.1"),
            (Some("1.0.3"), Some(Bump::Minor), None, "1.1.0"),
            (Some("1.4.3"), Some(Bump::Major), None, "2.0.0"),
            (Some("1.0.0"), None, Some("1.5.0"), "1.5.0"),
            (Some("1.2.0-rc.1"), None, None, "1.2.0"),
        ];
        for (latest, bump, explicit, want) in cases {
            let got = next_version(latest.map(v).as_ref(), bump, explicit.map(v).as_ref());
            assert_eq!(got, Ok(v(want)), "{latest:?} {bump:?} {explicit:?}");
        }
    }

    #[test]
    fn explicit_version_must_be_greater() {
        for explicit in ["1.0.0", "0.9.9", "1.0.0-rc.1"] {
            assert!(next_version(Some(&v("1.0.0")), None, Some(&v(explicit))).is_err());
        }
    }
}
