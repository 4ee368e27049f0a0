//! The capability names: which WIT interface each capability is. Pure data,
//! shared by the manifest, the static import check, the linker, the consent
//! service and the API, so all of them agree on what a capability is called.
//! How much consent each needs is declared by its folder in the runtime.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The WIT package every mini-program is written against.
pub const PACKAGE: &str = "superapp:plugin";
/// The contract version this host implements.
pub const VERSION: &str = "0.2.2";

/// Can a component written against contract `version` run on this host?
/// Versions of the same `0.2` line only add interfaces, so a component for
/// an older one links unchanged (wasmtime's linker resolves `@0.2.0`
/// imports to the `@0.2.2` definitions); a newer or another line cannot.
pub fn compatible(version: &str) -> bool {
    let (Ok(ours), Ok(theirs)) = (
        semver::Version::parse(VERSION),
        semver::Version::parse(version),
    ) else {
        return false;
    };
    theirs.pre.is_empty()
        && theirs.major == ours.major
        && theirs.minor == ours.minor
        && theirs.patch <= ours.patch
}

/// Everything a mini-program may ask the host for, one WIT interface each.
/// Adding one is a variant here (the compiler then asks for its name below,
/// and for its folder in the runtime's registry, `capabilities::registration`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    Log,
    Identity,
    Profile,
    Storage,
    SharedStorage,
    Notify,
    Payments,
    Documents,
    Clock,
    Random,
    Http,
}

/// What the user must agree to before a capability call succeeds. Each
/// capability's level is set in its runtime folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConsentLevel {
    /// Declaring it in the manifest is enough.
    None,
    /// The user is asked once per app (and again if a new version adds it).
    OncePerApp,
    /// Every single use is confirmed by the user in a host-drawn sheet.
    EveryUse,
}

impl ConsentLevel {
    /// The level's name, as the API and the auditor's reports spell it.
    pub fn name(self) -> &'static str {
        match self {
            ConsentLevel::None => "none",
            ConsentLevel::OncePerApp => "once-per-app",
            ConsentLevel::EveryUse => "every-use",
        }
    }
}

impl Capability {
    /// Every capability, in the order users and auditors see them.
    pub const ALL: [Capability; 11] = [
        Capability::Log,
        Capability::Identity,
        Capability::Profile,
        Capability::Storage,
        Capability::SharedStorage,
        Capability::Notify,
        Capability::Payments,
        Capability::Documents,
        Capability::Clock,
        Capability::Random,
        Capability::Http,
    ];

    /// Every capability, in table order.
    pub fn all() -> impl Iterator<Item = Capability> {
        Capability::ALL.into_iter()
    }

    /// The manifest and WIT name, e.g. `shared-storage`.
    pub fn name(self) -> &'static str {
        match self {
            Capability::Log => "log",
            Capability::Identity => "identity",
            Capability::Profile => "profile",
            Capability::Storage => "storage",
            Capability::SharedStorage => "shared-storage",
            Capability::Notify => "notify",
            Capability::Payments => "payments",
            Capability::Documents => "documents",
            Capability::Clock => "clock",
            Capability::Random => "random",
            Capability::Http => "http",
        }
    }

    /// The full WIT interface name, e.g. `superapp:plugin/storage@0.2.0`.
    pub fn interface(self) -> String {
        format!("{PACKAGE}/{}@{VERSION}", self.name())
    }

    pub fn from_name(name: &str) -> Option<Capability> {
        Capability::all().find(|c| c.name() == name)
    }

    /// The names of all capabilities, for error messages.
    pub fn known_names() -> String {
        Capability::all()
            .map(Capability::name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_capability_round_trips_through_its_name() {
        for cap in Capability::all() {
            assert_eq!(Capability::from_name(cap.name()), Some(cap));
            let json = serde_json::to_string(&cap).unwrap();
            assert_eq!(json, format!("\"{}\"", cap.name()), "serde and WIT agree");
        }
        assert_eq!(Capability::from_name("files"), None);
        assert!(compatible("0.2.0") && compatible(VERSION));
        assert!(!compatible("0.2.9") && !compatible("0.3.0") && !compatible("0.1.0"));
        assert!(!compatible("0.2.1-rc1") && !compatible("latest"));
        for level in [
            ConsentLevel::None,
            ConsentLevel::OncePerApp,
            ConsentLevel::EveryUse,
        ] {
            let json = serde_json::to_string(&level).unwrap();
            assert_eq!(json, format!("\"{}\"", level.name()));
        }
    }
}
