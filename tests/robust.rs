//! Robust and calibrated verdicts through the CLI: the perturbation sweep, the false-alarm
//! budget, calibration of a model and the UNCERTAIN answer for shapes no model was trained on.

mod common;

use common::*;
use serde_json::Value;

#[test]
fn robustness_sweeps_the_perturbations_and_writes_every_format() {
    let dir = temp_dir("robust-sweep");
    make_dataset(&dir.join("data"), 12, 32, 3);
    let out_dir = dir.join("out");
    let out = run(&[
        "robustness",
        "--data",
        dir.join("data").to_str().unwrap(),
        "--perturbations",
        "none,jpeg:30,down:0.5+jpeg:75",
        "--out",
        out_dir.to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let sweep: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let rows = sweep["rows"].as_array().unwrap();
    let names: Vec<&str> = rows
        .iter()
        .map(|r| r["perturbation"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["none", "jpeg:30", "down:0.5+jpeg:75"]);
    assert!(rows.iter().all(|r| r["images"] == 24));
    assert_eq!(rows[0]["flipped"], 0.0);
    for f in [
        "robustness.md",
        "robustness.csv",
        "robustness.json",
        "robustness.png",
    ] {
        assert!(out_dir.join(f).is_file(), "missing {f}");
    }
    let bad = run(&[
        "robustness",
        "--data",
        dir.join("data").to_str().unwrap(),
        "--perturbations",
        "sharpen:2",
    ]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("sharpen:2"), "{}", stderr(&bad));
}

#[test]
fn degenerate_shapes_are_uncertain_and_the_fpr_budget_moves_the_threshold() {
    let dir = temp_dir("robust-shapes");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, w, h) in [("dot.png", 1, 1), ("line.png", 5000, 1), ("ok.png", 32, 32)] {
        image::RgbImage::from_pixel(w, h, image::Rgb([120, 130, 140]))
            .save(dir.join(name))
            .unwrap();
    }
    let score = |extra: &[&str]| -> Vec<Value> {
        let mut args = vec!["predict", "--json"];
        args.extend_from_slice(extra);
        let d = dir.to_str().unwrap().to_string();
        args.push(&d);
        let out = run(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let plain = score(&[]);
    for l in &plain {
        let path = l["path"].as_str().unwrap();
        if path.ends_with("dot.png") || path.ends_with("line.png") {
            assert_eq!(l["label"], "UNCERTAIN", "{l}");
            assert!(
                l["reason"]
                    .as_str()
                    .unwrap()
                    .contains("too small or too elongated"),
                "{l}"
            );
        }
    }
    let strict = score(&["--max-fpr", "0.01"]);
    assert!(
        strict[0]["threshold"].as_f64() > plain[0]["threshold"].as_f64(),
        "{strict:?}"
    );
    let bad = run(&["predict", "--max-fpr", "2", dir.to_str().unwrap()]);
    assert!(
        !bad.status.success() && stderr(&bad).contains("--max-fpr 2"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn calibrate_writes_a_model_with_temperature_band_and_quantiles() {
    let dir = temp_dir("robust-calibrate");
    make_dataset(&dir.join("data"), 60, 32, 5);
    let model = dir.join("calibrated.synthscan");
    let out = run(&[
        "calibrate",
        "--data",
        dir.join("data").to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("temperature"), "{}", stdout(&out));
    let info = run(&["info", "--model", model.to_str().unwrap()]);
    let meta: Value = serde_json::from_str(&stdout(&info)).unwrap();
    assert!(meta["temperature"].as_f64().unwrap() > 0.0);
    assert_eq!(meta["real_quantiles"], "1001 values");
    assert_eq!(meta["calibration"]["images"], 6, "5 % of 60 per class");
    let missing = run(&[
        "calibrate",
        "--data",
        dir.join("nothing").to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
    ]);
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("nothing"), "{}", stderr(&missing));
}
