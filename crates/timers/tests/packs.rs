//! Rule packs as data: the shipped files, and the errors a broken file gives.

mod common;

use std::path::{Path, PathBuf};

use aftersales_timers::{DueRule, Expiry, RuleBook, RuleError, RulePack};
use common::book;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn the_packs_on_disk_are_the_built_in_ones() {
    let loaded = RuleBook::load_dir(&repo().join("rules/packs")).unwrap();
    let strip = |b: &RuleBook| -> Vec<_> {
        b.packs()
            .map(|p| (p.id.clone(), p.platform.clone(), p.rules.clone()))
            .collect()
    };
    assert_eq!(strip(&loaded), strip(book()));
    assert_eq!(loaded.packs().count(), 6);
}

#[test]
fn every_rule_names_its_source() {
    for pack in book().packs() {
        for rule in &pack.rules {
            assert!(rule.source.is_some(), "{} has no source", rule.id);
        }
    }
}

/// The generic pack is JD's numbers: same kinds, triggers, conditions and due rules, rule
/// by rule, only ever `deadline_only` (C8) and marked `default_from = jd@2024`.
#[test]
fn the_generic_pack_mirrors_jd() {
    let jd = book()
        .pack(&"jd@2024".to_string().try_into().unwrap())
        .unwrap();
    let generic = book()
        .pack(&"generic@2024".to_string().try_into().unwrap())
        .unwrap();
    assert!(!generic.rules.is_empty());
    for g in &generic.rules {
        let jd_id = g.id.as_str().replacen("generic.", "jd.", 1);
        let j = jd
            .rules
            .iter()
            .find(|r| r.id.as_str() == jd_id)
            .unwrap_or_else(|| panic!("{} has no JD rule {jd_id}", g.id));
        assert_eq!(
            (g.kind, &g.on, &g.when, g.due, &g.disarmed_by),
            (j.kind, &j.on, &j.when, j.due, &j.disarmed_by),
            "{} differs from {jd_id}",
            g.id
        );
        assert_eq!(g.expiry, Expiry::DeadlineOnly, "{}", g.id);
        assert_eq!(g.default_from.as_ref().map(|p| p.as_str()), Some("jd@2024"));
    }
    // Every JD rule armed by a ticket event has its default.
    for j in jd
        .rules
        .iter()
        .filter(|r| r.on.iter().any(|t| !t.is_external()))
    {
        let g_id = j.id.as_str().replacen("jd.", "generic.", 1);
        assert!(
            generic.rules.iter().any(|g| g.id.as_str() == g_id),
            "{g_id} missing"
        );
    }
}

#[test]
fn tmall_and_douyin_extend_the_generic_pack() {
    for id in ["tmall@2024", "douyin@2024"] {
        let pack = book().pack(&id.to_string().try_into().unwrap()).unwrap();
        assert_eq!(pack.extends.as_ref().unwrap().as_str(), "generic@2024");
        let given: Vec<_> = pack
            .rules
            .iter()
            .filter(|r| r.due == DueRule::PlatformGiven)
            .collect();
        assert_eq!(given.len(), 1, "{id}");
        assert!(pack.rules.iter().any(|r| r.id.as_str() == "generic.review"));
    }
}

const GOOD_RULE: &str = r#"
[[rules]]
id = "x.review"
kind = "review"
on = ["opened"]
due = { hours = 48 }
disarmed_by = ["approved"]
expiry = "deadline_only"
"#;

fn pack_text(rules: &str) -> String {
    format!("id = \"x@1\"\nplatform = \"jd\"\n{rules}")
}

fn err(rules: &str) -> RuleError {
    RulePack::from_toml_str(&pack_text(rules), "x.toml").unwrap_err()
}

#[test]
fn a_good_pack_loads() {
    let pack = RulePack::from_toml_str(&pack_text(GOOD_RULE), "x.toml").unwrap();
    assert_eq!(pack.rules.len(), 1);
    assert_eq!(pack.origin, "x.toml");
}

#[test]
fn an_unknown_event_name_is_named() {
    let e = err(&GOOD_RULE.replace(r#"on = ["opened"]"#, r#"on = ["shipped_out"]"#));
    assert!(
        matches!(&e, RuleError::UnknownEvent { file, rule, field: "on", name, .. }
            if file == "x.toml" && rule == "x.review" && name == "shipped_out"),
        "{e}"
    );
    let e = err(&GOOD_RULE.replace(r#"["approved"]"#, r#"["aproved"]"#));
    assert!(
        matches!(&e, RuleError::UnknownEvent { field: "disarmed_by", name, .. } if name == "aproved"),
        "{e}"
    );
    assert!(e.to_string().contains("known: opened, approved"), "{e}");
}

#[test]
fn an_unknown_deadline_kind_is_named() {
    let e = err(&GOOD_RULE.replace(r#"kind = "review""#, r#"kind = "reveiw""#));
    assert!(
        matches!(&e, RuleError::UnknownDeadlineKind { file, name, .. }
            if file == "x.toml" && name == "reveiw"),
        "{e}"
    );
}

#[test]
fn a_duplicate_rule_id_is_refused() {
    let e = err(&format!("{GOOD_RULE}{GOOD_RULE}"));
    assert!(
        matches!(&e, RuleError::DuplicateRuleId { file, rule } if file == "x.toml" && rule == "x.review"),
        "{e}"
    );
}

#[test]
fn bad_values_are_refused() {
    // A misspelt field, an unknown service type, an unknown expiry: the TOML reader's error.
    for bad in [
        GOOD_RULE.replace("disarmed_by", "disarmed"),
        GOOD_RULE.replace("expiry = \"deadline_only\"", "expiry = \"approve_maybe\""),
        GOOD_RULE.replace("on = [", "when = { service_types = [\"refund\"] }\non = ["),
        GOOD_RULE.replace("{ hours = 48 }", "{ weeks = 1 }"),
    ] {
        let e = err(&bad);
        assert!(
            matches!(&e, RuleError::Syntax { file, .. } if file == "x.toml"),
            "{e}"
        );
    }
    // Checked after reading: zero counts, a cutoff after its due time, no trigger, a trigger
    // that both arms and disarms, a bad rule id.
    for (bad, why) in [
        (GOOD_RULE.replace("hours = 48", "hours = 0"), "at least 1"),
        (
            GOOD_RULE.replace(
                "{ hours = 48 }",
                r#"{ clock_cutoff = { cutoff = "18:00", due = "16:00" } }"#,
            ),
            "must be later",
        ),
        (
            GOOD_RULE.replace(r#"on = ["opened"]"#, "on = []"),
            "at least one event",
        ),
        (
            GOOD_RULE.replace(r#"["approved"]"#, r#"["opened"]"#),
            "both arms and disarms",
        ),
        (GOOD_RULE.replace("x.review", "x\\u0007review"), "rule id"),
    ] {
        let e = err(&bad);
        assert!(matches!(&e, RuleError::InvalidRule { .. }), "{e}");
        assert!(e.to_string().contains(why), "{e} should say {why}");
    }
}

#[test]
fn bad_pack_headers_are_refused() {
    let e = RulePack::from_toml_str("id = \"jd\"\nplatform = \"jd\"\n", "p.toml").unwrap_err();
    assert!(matches!(&e, RuleError::InvalidPack { reason, .. } if reason.contains("name@version")));
    let e = RulePack::from_toml_str("id = \"jd@1\"\nplatform = \"J D\"\n", "p.toml").unwrap_err();
    assert!(matches!(&e, RuleError::InvalidPack { .. }), "{e}");
}

fn parse(id: &str, platform: &str, extra: &str) -> RulePack {
    let text = format!("id = \"{id}\"\nplatform = \"{platform}\"\n{extra}");
    RulePack::from_toml_str(&text, &format!("{id}.toml")).unwrap()
}

#[test]
fn the_book_checks_packs_against_each_other() {
    let e =
        RuleBook::from_packs(vec![parse("a@1", "jd", ""), parse("a@1", "pdd", "")]).unwrap_err();
    assert!(
        matches!(&e, RuleError::DuplicatePack { pack, .. } if pack == "a@1"),
        "{e}"
    );

    let e = RuleBook::from_packs(vec![parse("a@1", "jd", ""), parse("b@1", "jd", "")]).unwrap_err();
    assert!(
        matches!(&e, RuleError::DuplicatePlatform { platform, .. } if platform == "jd"),
        "{e}"
    );

    let e = RuleBook::from_packs(vec![parse("a@1", "jd", "extends = \"g@1\"\n")]).unwrap_err();
    assert!(
        matches!(
            &e,
            RuleError::UnknownPack {
                field: "extends",
                ..
            }
        ),
        "{e}"
    );

    let defaulted = GOOD_RULE.replace("expiry", "default_from = \"jd@9\"\nexpiry");
    let e = RuleBook::from_packs(vec![parse("a@1", "jd", &defaulted)]).unwrap_err();
    assert!(
        matches!(&e, RuleError::UnknownPack { field: "default_from", pack, .. } if pack == "jd@9"),
        "{e}"
    );

    let chain = vec![
        parse("g@1", "generic", ""),
        parse("h@1", "pdd", "extends = \"g@1\"\n"),
        parse("a@1", "jd", "extends = \"h@1\"\n"),
    ];
    let e = RuleBook::from_packs(chain).unwrap_err();
    assert!(e.to_string().contains("only one level"), "{e}");

    let both = vec![
        parse("g@1", "generic", GOOD_RULE),
        parse("a@1", "jd", &format!("extends = \"g@1\"\n{GOOD_RULE}")),
    ];
    let e = RuleBook::from_packs(both).unwrap_err();
    assert!(
        matches!(&e, RuleError::DuplicateRuleId { rule, .. } if rule.contains("x.review")),
        "{e}"
    );
}

#[test]
fn a_directory_with_a_broken_pack_names_the_file() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("broken-packs");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.toml"), pack_text(GOOD_RULE)).unwrap();
    std::fs::write(dir.join("README.md"), "not a pack").unwrap();
    assert_eq!(RuleBook::load_dir(&dir).unwrap().packs().count(), 1);

    let broken = pack_text(&GOOD_RULE.replace("review\"\non", "nope\"\non"));
    std::fs::write(
        dir.join("b.toml"),
        broken.replace("x@1", "y@1").replace("\"jd\"", "\"pdd\""),
    )
    .unwrap();
    let e = RuleBook::load_dir(&dir).unwrap_err();
    assert!(
        matches!(&e, RuleError::UnknownDeadlineKind { file, .. } if file.ends_with("b.toml")),
        "{e}"
    );
    let e = RuleBook::load_dir(&dir.join("missing")).unwrap_err();
    assert!(matches!(&e, RuleError::Io { .. }), "{e}");
}

#[test]
fn a_warning_can_neither_arm_nor_disarm_a_rule() {
    for edit in [
        GOOD_RULE.replace(
            r#"on = ["opened"]"#,
            r#"on = ["opened", "deadline_warned"]"#,
        ),
        GOOD_RULE.replace(r#"["approved"]"#, r#"["approved", "deadline_warned"]"#),
    ] {
        let e = err(&edit);
        assert!(
            matches!(&e, RuleError::InvalidRule { rule, reason, .. }
                if rule == "x.review" && reason.contains("deadline_warned")),
            "{e}"
        );
    }
    // Nor is it offered as a name to use.
    let e = err(&GOOD_RULE.replace(r#"on = ["opened"]"#, r#"on = ["shipped_out"]"#));
    assert!(!e.to_string().contains("deadline_warned"), "{e}");
}
