//! Rule packs: one platform's deadline rules as data (`rules/packs/*.toml`).
//!
//! A pack is read into raw serde structs first and then checked rule by rule, so that a
//! mistake in a file comes back as a [`RuleError`] naming the file, the rule and the reason.

use std::path::Path;

use aftersales_ticket::{AutoOutcome, DeadlineKind, Platform, RuleId};
use serde::{Deserialize, Serialize};

use crate::due::DueRule;
use crate::trigger::{Condition, Trigger};

/// Why a rule pack (or a book of them) could not be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("cannot read rule pack {file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("rule pack {file} is not a valid rule pack: {reason}")]
    Syntax { file: String, reason: String },
    #[error("rule pack {file}: {reason}")]
    InvalidPack { file: String, reason: String },
    #[error(
        "rule pack {file}, rule {rule}: unknown event name {name:?} in `{field}` (known: {known})"
    )]
    UnknownEvent {
        file: String,
        rule: String,
        field: &'static str,
        name: String,
        known: String,
    },
    #[error("rule pack {file}, rule {rule}: unknown deadline kind {name:?} (known: {known})")]
    UnknownDeadlineKind {
        file: String,
        rule: String,
        name: String,
        known: String,
    },
    #[error("rule pack {file}: rule id {rule} is used twice")]
    DuplicateRuleId { file: String, rule: String },
    #[error("rule pack {file}, rule {rule}: {reason}")]
    InvalidRule {
        file: String,
        rule: String,
        reason: String,
    },
    #[error("rule pack {file}: pack {pack} is defined twice (also in {other})")]
    DuplicatePack {
        file: String,
        pack: String,
        other: String,
    },
    #[error("rule pack {file}: platform {platform} has two packs ({pack} and {other})")]
    DuplicatePlatform {
        file: String,
        platform: String,
        pack: String,
        other: String,
    },
    #[error("rule pack {file}: `{field}` names pack {pack}, which is not in the rule book")]
    UnknownPack {
        file: String,
        field: &'static str,
        pack: String,
    },
}

pub use aftersales_ticket::RulePackId;

/// What happens when a deadline passes. Every expiry records a `deadline_expired` event;
/// the others also apply the platform's automatic outcome (`AutoOutcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expiry {
    /// Only the `deadline_expired` event: a breach to report, the platform decides nothing.
    DeadlineOnly,
    Approve,
    Refund,
    RefundWithoutReturn,
    Lapse,
}

impl Expiry {
    /// The platform's automatic outcome, if the expiry has one.
    pub fn auto_outcome(self) -> Option<AutoOutcome> {
        match self {
            Expiry::DeadlineOnly => None,
            Expiry::Approve => Some(AutoOutcome::Approve),
            Expiry::Refund => Some(AutoOutcome::Refund),
            Expiry::RefundWithoutReturn => Some(AutoOutcome::RefundWithoutReturn),
            Expiry::Lapse => Some(AutoOutcome::Lapse),
        }
    }
}

/// One deadline rule: what arms it, when it falls due, what stops it, what expiry does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {
    pub id: RuleId,
    pub kind: DeadlineKind,
    /// The events (or external triggers) that arm it; arming again replaces the deadline.
    pub on: Vec<Trigger>,
    /// What the ticket must be like after the arming event.
    pub when: Condition,
    pub due: DueRule,
    /// The events that stop it. Besides these, a deadline stops when its own
    /// `deadline_expired` is recorded, and when the ticket enters a state its kind does not
    /// run in (`DeadlineKind::runs_in`, which includes every final state).
    pub disarmed_by: Vec<Trigger>,
    pub expiry: Expiry,
    /// The pack whose numbers this rule borrows when the platform publishes none of its own
    /// (RULES.md section 3: Tmall/Taobao and Douyin default to JD's numbers).
    pub default_from: Option<RulePackId>,
    /// Where the rule comes from (RULES.md section and source document).
    pub source: Option<String>,
    /// A choice made where the source is ambiguous (also in docs/DEADLINES.md).
    pub note: Option<String>,
}

/// A platform's rules. A pack that `extends` another holds only its own rules until a
/// [`RuleBook`](crate::RuleBook) puts the base pack's rules in front of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RulePack {
    pub id: RulePackId,
    /// `None` for the generic pack (`platform = "generic"`), used for platforms without one.
    pub platform: Option<Platform>,
    pub extends: Option<RulePackId>,
    pub source: Option<String>,
    pub note: Option<String>,
    pub rules: Vec<Rule>,
    /// Where the pack was read from (a path, or `built-in …`), for error messages.
    #[serde(skip)]
    pub origin: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PackFile {
    id: String,
    platform: String,
    #[serde(default)]
    extends: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    rules: Vec<RuleFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    id: String,
    kind: String,
    on: Vec<String>,
    #[serde(default)]
    when: Condition,
    due: DueRule,
    #[serde(default)]
    disarmed_by: Vec<String>,
    expiry: Expiry,
    #[serde(default)]
    default_from: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

fn known_events() -> String {
    Trigger::ALL
        .into_iter()
        .filter(|t| t.can_arm_or_disarm())
        .map(Trigger::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

fn parse_kind(name: &str) -> Option<DeadlineKind> {
    DeadlineKind::ALL.into_iter().find(|k| k.as_str() == name)
}

impl RulePack {
    /// Reads one pack file.
    pub fn load(path: &Path) -> Result<RulePack, RuleError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| RuleError::Io {
            file: file.clone(),
            source,
        })?;
        RulePack::from_toml_str(&text, &file)
    }

    /// Parses and checks one pack; `origin` names the text in errors (a path, usually).
    pub fn from_toml_str(text: &str, origin: &str) -> Result<RulePack, RuleError> {
        let file = origin.to_owned();
        let raw: PackFile = toml::from_str(text).map_err(|e| RuleError::Syntax {
            file: file.clone(),
            reason: e.to_string(),
        })?;
        let invalid_pack = |reason: String| RuleError::InvalidPack {
            file: file.clone(),
            reason,
        };
        let id = RulePackId::parse(&raw.id).map_err(|e| invalid_pack(e.to_string()))?;
        let platform = match raw.platform.as_str() {
            "generic" => None,
            p => Some(
                p.parse::<Platform>()
                    .map_err(|e| invalid_pack(e.to_string()))?,
            ),
        };
        let extends = raw
            .extends
            .as_deref()
            .map(RulePackId::parse)
            .transpose()
            .map_err(|e| invalid_pack(e.to_string()))?;
        let mut rules: Vec<Rule> = Vec::with_capacity(raw.rules.len());
        for r in raw.rules {
            let rule = check_rule(r, &file)?;
            if rules.iter().any(|x| x.id == rule.id) {
                return Err(RuleError::DuplicateRuleId {
                    file,
                    rule: rule.id.to_string(),
                });
            }
            rules.push(rule);
        }
        Ok(RulePack {
            id,
            platform,
            extends,
            source: raw.source,
            note: raw.note,
            rules,
            origin: file,
        })
    }

    /// The rule with this id.
    pub fn rule(&self, id: &RuleId) -> Option<&Rule> {
        self.rules.iter().find(|r| &r.id == id)
    }
}

fn check_rule(r: RuleFile, file: &str) -> Result<Rule, RuleError> {
    let invalid = |reason: String| RuleError::InvalidRule {
        file: file.to_owned(),
        rule: r.id.clone(),
        reason,
    };
    let id = RuleId::parse(&r.id).map_err(|e| invalid(e.to_string()))?;
    let kind = parse_kind(&r.kind).ok_or_else(|| RuleError::UnknownDeadlineKind {
        file: file.to_owned(),
        rule: r.id.clone(),
        name: r.kind.clone(),
        known: DeadlineKind::ALL.map(DeadlineKind::as_str).join(", "),
    })?;
    let triggers = |field: &'static str, names: &[String]| -> Result<Vec<Trigger>, RuleError> {
        names
            .iter()
            .map(|n| {
                Trigger::parse(n).ok_or_else(|| RuleError::UnknownEvent {
                    file: file.to_owned(),
                    rule: r.id.clone(),
                    field,
                    name: n.clone(),
                    known: known_events(),
                })
            })
            .collect()
    };
    let on = triggers("on", &r.on)?;
    let disarmed_by = triggers("disarmed_by", &r.disarmed_by)?;
    if on.is_empty() {
        return Err(invalid("`on` must name at least one event".to_owned()));
    }
    if let Some(t) = on
        .iter()
        .chain(&disarmed_by)
        .find(|t| !t.can_arm_or_disarm())
    {
        return Err(invalid(format!(
            "{t} is an alert about a running deadline and cannot arm or disarm a rule"
        )));
    }
    if let Some(t) = on.iter().find(|t| disarmed_by.contains(t)) {
        return Err(invalid(format!("{t} both arms and disarms the rule")));
    }
    r.due.check().map_err(invalid)?;
    let default_from = r
        .default_from
        .as_deref()
        .map(RulePackId::parse)
        .transpose()
        .map_err(|e| invalid(e.to_string()))?;
    Ok(Rule {
        id,
        kind,
        on,
        when: r.when,
        due: r.due,
        disarmed_by,
        expiry: r.expiry,
        default_from,
        source: r.source,
        note: r.note,
    })
}
