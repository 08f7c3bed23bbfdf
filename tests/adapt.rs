//! `synthscan adapt` through the CLI on generated images and the built-in realworld model:
//! what it refuses (a CNN without a backbone, a base task it cannot check), what it writes with
//! `--force` (the model, its card, the lineage `info` shows), the feature cache on a second run,
//! and the guard against the base model's own data.

mod common;

use common::*;

fn s(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}

#[test]
fn the_cifake_cnn_is_refused_with_what_to_do_instead() {
    let dir = temp_dir("adapt-cnn");
    make_dataset(&dir.join("c"), 3, 40, 1);
    let o = run(&[
        "adapt",
        "--model",
        "cifake",
        "--data",
        &s(&dir.join("c")),
        "--out",
        &s(&dir.join("x.synthscan")),
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("init:") && err.lines().count() == 1, "{err}");
    assert!(!dir.join("x.synthscan").exists());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn adapt_guards_writes_a_card_and_records_the_lineage() {
    let dir = temp_dir("adapt-run");
    let (corr, base, cache) = (dir.join("corrections"), dir.join("base"), dir.join("cache"));
    make_dataset(&corr, 4, 48, 3);
    make_dataset(&base, 10, 48, 4);
    let out = dir.join("ours.synthscan");
    let args = |extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "adapt",
            "--data",
            &s(&corr),
            "--out",
            &s(&out),
            "--cache",
            &s(&cache),
            "--epochs",
            "3",
            "--folds",
            "2",
        ]
        .map(String::from)
        .to_vec();
        a.extend(extra.iter().map(|e| e.to_string()));
        a
    };
    let run_with = |extra: &[&str]| bin().args(args(extra)).output().expect("run");
    let base_arg = s(&base);
    let with_base = [
        "--base-data",
        base_arg.as_str(),
        "--replay",
        "8",
        "--base-val",
        "8",
        "--force",
    ];
    // No base data: the base task cannot be checked, so nothing is written.
    let o = run_with(&[]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("--base-data"), "{}", stderr(&o));
    assert!(!out.exists());
    // With base data: before/after table; written unless the guard refuses, always with --force.
    let o = run_with(&with_base);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("corrections (out of fold)") && text.contains("base model's own data"),
        "{text}"
    );
    // The corrections' features were cached by the refused run; the base images' were not.
    assert!(text.contains("; 8 features from the cache"), "{text}");
    assert!(out.is_file());
    let card = std::fs::read_to_string(dir.join("ours.MODEL_CARD.md")).expect("model card");
    assert!(
        card.contains("from **realworld**") && card.contains("4 REAL + 4 FAKE"),
        "{card}"
    );
    let info = run(&["info", "--model", &s(&out)]);
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).expect("info JSON");
    let lineage = v["lineage"].as_array().expect("lineage");
    assert!(
        lineage[0]
            .as_str()
            .unwrap()
            .starts_with("realworld (sha256 "),
        "{v}"
    );
    assert!(
        lineage[1].as_str().unwrap().starts_with("ours (adapted "),
        "{v}"
    );
    // The same images again: every feature comes from the cache, and the result is the same.
    let first = std::fs::read(&out).unwrap();
    let o = run_with(&with_base);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("{} features from the cache", 8 + 8 + 8)),
        "{}",
        stdout(&o)
    );
    let second = std::fs::read(&out).unwrap();
    assert_eq!(first.len(), second.len());
    // The adapted model scores like any model file.
    let p = run(&[
        "predict",
        "--json",
        "--model",
        &s(&out),
        &s(&corr.join("REAL")),
    ]);
    assert!(p.status.success(), "{}", stderr(&p));
    assert_eq!(stdout(&p).lines().count(), 4);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_values_and_too_few_images_are_one_line_errors_naming_them() {
    let dir = temp_dir("adapt-bad");
    let corr = dir.join("c");
    make_dataset(&corr, 1, 40, 5);
    let out = s(&dir.join("x.synthscan"));
    for (flag, value) in [
        ("--margin", "1.5"),
        ("--accuracy-margin", "1.1"),
        ("--max-fpr", "2"),
    ] {
        let o = run(&["adapt", "--data", &s(&corr), "--out", &out, flag, value]);
        assert!(!o.status.success());
        let err = stderr(&o);
        assert!(
            err.contains(flag) && err.contains(value) && err.lines().count() == 1,
            "{err}"
        );
    }
    // Two images: fewer than adapt works with; the message names the folder.
    let o = run(&["adapt", "--data", &s(&corr), "--out", &out, "--no-cache"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    let last = err.lines().last().unwrap_or("");
    assert!(
        last.contains(&s(&corr)) && last.contains("at least 4"),
        "{err}"
    );
    assert!(!dir.join("x.synthscan").exists());
    let _ = std::fs::remove_dir_all(dir);
}
