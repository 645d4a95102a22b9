//! The rule book: every platform's pack, with `extends` resolved and cross-pack references
//! (`extends`, `default_from`) checked.

use std::collections::BTreeMap;
use std::path::Path;

use aftersales_ticket::Platform;

use crate::pack::{RuleError, RulePack, RulePackId};

/// The packs compiled into the crate (`rules/packs/*.toml` at build time).
pub const BUILTIN_PACKS: [(&str, &str); 6] = [
    (
        "built-in rules/packs/generic.toml",
        include_str!("../../../rules/packs/generic.toml"),
    ),
    (
        "built-in rules/packs/jd.toml",
        include_str!("../../../rules/packs/jd.toml"),
    ),
    (
        "built-in rules/packs/tmall.toml",
        include_str!("../../../rules/packs/tmall.toml"),
    ),
    (
        "built-in rules/packs/pdd.toml",
        include_str!("../../../rules/packs/pdd.toml"),
    ),
    (
        "built-in rules/packs/kuaishou.toml",
        include_str!("../../../rules/packs/kuaishou.toml"),
    ),
    (
        "built-in rules/packs/douyin.toml",
        include_str!("../../../rules/packs/douyin.toml"),
    ),
];

/// All packs, at most one per platform plus at most one generic pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleBook {
    packs: BTreeMap<RulePackId, RulePack>,
}

impl RuleBook {
    /// The packs compiled into the crate.
    pub fn builtin() -> RuleBook {
        let packs = BUILTIN_PACKS
            .iter()
            .map(|(origin, text)| RulePack::from_toml_str(text, origin))
            .collect::<Result<Vec<_>, _>>()
            .and_then(RuleBook::from_packs);
        packs.expect("the built-in rule packs are checked by the crate's tests")
    }

    /// Reads every `*.toml` file of a directory (in name order) as a pack.
    pub fn load_dir(dir: &Path) -> Result<RuleBook, RuleError> {
        let io = |source| RuleError::Io {
            file: dir.display().to_string(),
            source,
        };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().is_some_and(|e| e == "toml") {
                paths.push(path);
            }
        }
        paths.sort();
        let packs = paths
            .iter()
            .map(|p| RulePack::load(p))
            .collect::<Result<Vec<_>, _>>()?;
        RuleBook::from_packs(packs)
    }

    /// Checks the packs against each other and resolves `extends` (one level: a base pack
    /// may not extend another). The base's rules come first; a rule id in both is an error.
    pub fn from_packs(packs: Vec<RulePack>) -> Result<RuleBook, RuleError> {
        let mut by_id: BTreeMap<RulePackId, RulePack> = BTreeMap::new();
        let mut by_platform: BTreeMap<String, RulePackId> = BTreeMap::new();
        for pack in packs {
            if let Some(other) = by_id.get(&pack.id) {
                return Err(RuleError::DuplicatePack {
                    file: pack.origin.clone(),
                    pack: pack.id.to_string(),
                    other: other.origin.clone(),
                });
            }
            let platform = pack
                .platform
                .as_ref()
                .map_or("generic".to_owned(), |p| p.to_string());
            if let Some(other) = by_platform.insert(platform.clone(), pack.id.clone()) {
                return Err(RuleError::DuplicatePlatform {
                    file: pack.origin.clone(),
                    platform,
                    pack: pack.id.to_string(),
                    other: other.to_string(),
                });
            }
            by_id.insert(pack.id.clone(), pack);
        }
        let unresolved = by_id.clone();
        for pack in by_id.values_mut() {
            if let Some(base_id) = &pack.extends {
                let base = unresolved
                    .get(base_id)
                    .ok_or_else(|| RuleError::UnknownPack {
                        file: pack.origin.clone(),
                        field: "extends",
                        pack: base_id.to_string(),
                    })?;
                if base.extends.is_some() {
                    return Err(RuleError::InvalidPack {
                        file: pack.origin.clone(),
                        reason: format!(
                            "extends {base_id}, which extends another pack; only one level is allowed"
                        ),
                    });
                }
                if let Some(dup) = pack.rules.iter().find(|r| base.rule(&r.id).is_some()) {
                    return Err(RuleError::DuplicateRuleId {
                        file: pack.origin.clone(),
                        rule: format!("{} (also in {base_id})", dup.id),
                    });
                }
                let own = std::mem::take(&mut pack.rules);
                pack.rules = base.rules.iter().cloned().chain(own).collect();
            }
            for rule in &pack.rules {
                if let Some(from) = &rule.default_from {
                    if !unresolved.contains_key(from) {
                        return Err(RuleError::UnknownPack {
                            file: pack.origin.clone(),
                            field: "default_from",
                            pack: from.to_string(),
                        });
                    }
                }
            }
        }
        Ok(RuleBook { packs: by_id })
    }

    /// The pack with this id.
    pub fn pack(&self, id: &RulePackId) -> Option<&RulePack> {
        self.packs.get(id)
    }

    /// The platform's own pack, else the generic one.
    pub fn pack_for(&self, platform: &Platform) -> Option<&RulePack> {
        let own = self
            .packs
            .values()
            .find(|p| p.platform.as_ref() == Some(platform));
        own.or_else(|| self.packs.values().find(|p| p.platform.is_none()))
    }

    /// Every pack, in id order.
    pub fn packs(&self) -> impl Iterator<Item = &RulePack> {
        self.packs.values()
    }
}

impl Default for RuleBook {
    /// The built-in packs.
    fn default() -> Self {
        RuleBook::builtin()
    }
}
