//! Checks on the real CIFAKE data in `../shared`, skipped (with the reason) when it is absent.

mod common;
use common::*;
use serde_json::Value;

#[test]
fn embedded_model_meets_the_bar_on_cifake_test() {
    let Some(data) = cifake() else { return };
    let out = run(&[
        "evaluate",
        "--json",
        "--data",
        data.join("test").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let m: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(m["count"], 10_000);
    assert!(m["accuracy"].as_f64().unwrap() >= 0.95, "{m}");
    assert!(m["roc_auc"].as_f64().unwrap() >= 0.99, "{m}");
}

#[test]
fn committed_examples_are_classified_correctly() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let out = run(&["predict", "--json", root.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() >= 4);
    let right = lines
        .iter()
        .filter(|l| {
            l["path"]
                .as_str()
                .unwrap()
                .contains(&format!("/{}/", l["label"].as_str().unwrap()))
        })
        .count();
    assert!(
        right * 4 >= lines.len() * 3,
        "{right}/{} correct",
        lines.len()
    );
}
