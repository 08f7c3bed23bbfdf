//! End-to-end tests through the `synthscan` binary on data the tests generate.

mod common;
use common::*;
use serde_json::Value;
use std::path::Path;

#[test]
fn train_then_evaluate_separates_generated_classes() {
    let dir = temp_dir("train");
    make_split_dataset(&dir.join("data"), 160, 40, 16);
    let cfg = tiny_config(&dir, "tiny", 2);
    let out = run(&[
        "train",
        "--config",
        cfg.to_str().unwrap(),
        "--data",
        dir.join("data").to_str().unwrap(),
        "--out",
        dir.join("runs").to_str().unwrap(),
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run_dir = dir.join("runs/tiny");
    for f in [
        "config.yaml",
        "metrics.csv",
        "run.json",
        "model.synthscan",
        "weights/best.synthscan",
        "weights/last.synthscan",
    ] {
        assert!(run_dir.join(f).exists(), "missing {f}");
    }
    let csv = std::fs::read_to_string(run_dir.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    let info: Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(info["seed"], 7);
    assert_eq!(info["train_count"], serde_json::json!([128, 128]));
    assert!(info["git_revision"].is_string() && info["burn_version"].as_str() == Some("0.22.1"));

    let model = run_dir.join("model.synthscan");
    let out = run(&[
        "evaluate",
        "--model",
        model.to_str().unwrap(),
        "--data",
        dir.join("data").to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let m: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let keys: Vec<&str> = m.as_object().unwrap().keys().map(String::as_str).collect();
    for k in [
        "accuracy",
        "precision",
        "recall",
        "f1",
        "roc_auc",
        "threshold",
        "count",
        "images_per_second",
        "confusion",
        "false_alarm_rate",
        "tpr_at_1pct_fpr",
        "tpr_at_5pct_fpr",
        "average_precision",
        "ece",
        // The model is calibrated at the end of training, so it has an uncertain band.
        "coverage",
        "confident_accuracy",
    ] {
        assert!(keys.contains(&k), "missing {k} in {m}");
    }
    assert_eq!(keys.len(), 16, "{m}");
    let coverage = m["coverage"].as_f64().unwrap();
    assert!(coverage > 0.0 && coverage <= 1.0, "{m}");
    assert_eq!(m["count"], 80);
    assert!(m["accuracy"].as_f64().unwrap() > 0.9, "{m}");
    let c = &m["confusion"];
    assert_eq!(c["tp"].as_u64().unwrap() + c["fn"].as_u64().unwrap(), 40);
}

#[test]
fn resume_continues_a_killed_run() {
    let dir = temp_dir("resume");
    make_dataset(&dir.join("data"), 60, 16, 3);
    let cfg = tiny_config(&dir, "res", 3);
    let data = dir.join("data");
    let runs = dir.join("runs");
    // Simulate a run killed after epoch 1: train 1 epoch, then rewrite its config to 3 epochs.
    let one = tiny_config(&dir, "res", 1);
    let out = run(&[
        "train",
        "--config",
        one.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        runs.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let run_dir = runs.join("res");
    let text = std::fs::read_to_string(run_dir.join("config.yaml"))
        .unwrap()
        .replace("epochs: 1", "epochs: 3");
    std::fs::write(run_dir.join("config.yaml"), text).unwrap();
    let out = run(&["train", "--resume", run_dir.to_str().unwrap(), "--quiet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let csv = std::fs::read_to_string(run_dir.join("metrics.csv")).unwrap();
    let epochs: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(epochs, ["1", "2", "3"], "{csv}");
    let _ = cfg;
}

#[test]
fn resuming_a_folder_that_is_not_a_run_names_it() {
    let dir = temp_dir("notarun");
    let out = run(&["train", "--resume", dir.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(dir.to_str().unwrap()) && err.contains("not a run folder"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn config_errors_name_the_key_and_exit_nonzero() {
    let dir = temp_dir("cfgerr");
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "model: {preset: fast}\nlearning_rate: 0.1\n").unwrap();
    let out = run(&[
        "train",
        "--config",
        bad.to_str().unwrap(),
        "--data",
        dir.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("learning_rate") && err.contains("bad.yaml"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");

    let missing = run(&["train", "--config", dir.join("nope.yaml").to_str().unwrap()]);
    assert!(!missing.status.success());
    assert!(stderr(&missing).contains("nope.yaml"));
}

#[test]
fn predict_scores_good_files_and_reports_each_bad_one() {
    let dir = temp_dir("predict");
    make_dataset(&dir, 2, 32, 5);
    let good: Vec<_> = ["REAL/0000.png", "FAKE/0001.bmp"]
        .iter()
        .map(|p| dir.join(p))
        .collect();
    let empty = dir.join("empty.jpg");
    std::fs::write(&empty, b"").unwrap();
    let jpeg = dir.join("cut.jpg");
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
        .encode(
            make_image(false, 64, &mut rand::SeedableRng::seed_from_u64(1)).as_raw(),
            64,
            64,
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    std::fs::write(&jpeg, &bytes[..bytes.len() / 3]).unwrap();
    let text = dir.join("notes.png");
    std::fs::write(&text, "this is text, not a picture").unwrap();

    let mut args = vec!["predict", "--json"];
    let paths: Vec<String> = good
        .iter()
        .chain([&empty, &jpeg, &text])
        .map(|p| p.display().to_string())
        .collect();
    args.extend(paths.iter().map(String::as_str));
    let out = run(&args);
    assert!(
        !out.status.success(),
        "bad files must make the exit status non-zero"
    );
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    for l in &lines[..2] {
        let p = l["p_fake"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p));
        let label = l["label"].as_str().unwrap();
        assert!(["REAL", "FAKE", "UNCERTAIN"].contains(&label), "{l}");
        assert_eq!(label == "UNCERTAIN", l.get("reason").is_some(), "{l}");
        assert!(
            l["threshold"].as_f64().is_some() && l["model"] == "cifake",
            "{l}"
        );
        assert!(
            l["width"].as_u64().is_some() && l["height"].as_u64().is_some(),
            "{l}"
        );
    }
    for (l, name) in lines[2..].iter().zip(["empty.jpg", "cut.jpg", "notes.png"]) {
        assert!(l.get("p_fake").is_none());
        let e = l["error"].as_str().unwrap();
        assert!(e.contains(name), "{e}");
        assert!(l["path"].as_str().unwrap().ends_with(name));
    }
    assert!(!stderr(&out).contains("panicked"));

    // A folder is searched recursively; all good files → exit 0.
    let out = run(&["predict", "--json", dir.join("REAL").to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 2);
}

#[test]
fn missing_model_and_data_are_one_line_errors() {
    let out = run(&[
        "evaluate",
        "--model",
        "/nonexistent/m.synthscan",
        "--data",
        ".",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("/nonexistent/m.synthscan"));
    let out = run(&["evaluate", "--data", "/nonexistent/data"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("/nonexistent/data"));
}

#[test]
fn strict_mode_fails_on_a_corrupt_training_file() {
    let dir = temp_dir("strict");
    make_dataset(&dir.join("data"), 10, 16, 9);
    std::fs::write(dir.join("data/FAKE/broken.jpg"), b"\xff\xd8\xff garbage").unwrap();
    let out = run(&[
        "evaluate",
        "--data",
        dir.join("data").to_str().unwrap(),
        "--strict",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("broken.jpg"));
    let out = run(&[
        "evaluate",
        "--data",
        dir.join("data").to_str().unwrap(),
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let m: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(
        m["count"], 20,
        "the corrupt file is skipped, the rest scored"
    );
}

#[test]
fn bench_times_every_stage_on_generated_images_and_on_a_config() {
    let dir = temp_dir("bench");
    let cfg = tiny_config(&dir, "tiny", 1);
    for model in [
        vec!["--preset", "fast"],
        vec!["--config", cfg.to_str().unwrap()],
    ] {
        let mut args = vec!["bench", "--batch-size", "16", "--steps", "1"];
        args.extend(model);
        let out = run(&args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let text = stdout(&out);
        for (stage, unit) in [
            ("decode", "img/s"),
            ("augment", "img/s"),
            ("train step", "img/s"),
            ("inference", "img/s"),
            ("ratio loader / train step", "x"),
        ] {
            assert!(
                text.lines()
                    .any(|l| l.starts_with(stage) && l.contains(unit)),
                "{args:?}: no '{stage}' line in\n{text}"
            );
        }
    }
}

#[test]
fn tta_flag_overrides_the_models_stored_choice() {
    // The embedded model stores flip averaging; `--tta false` must change the score of an
    // asymmetric image, and `--tta true` must leave it as stored.
    let dir = temp_dir("tta");
    let img = image::RgbImage::from_fn(32, 32, |x, y| {
        image::Rgb([(x * 8) as u8, (y * 3) as u8, 40])
    });
    let path = dir.join("ramp.png");
    img.save(&path).unwrap();
    let score = |extra: &[&str]| -> f64 {
        let mut args = vec!["predict", "--json"];
        args.extend_from_slice(extra);
        args.push(path.to_str().unwrap());
        let out = run(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
        v["p_fake"].as_f64().unwrap()
    };
    let stored = score(&[]);
    assert_eq!(score(&["--tta", "true"]), stored);
    let single = score(&["--tta", "false"]);
    assert!((single - stored).abs() > 1e-6, "{single} vs {stored}");
    let out = run(&["predict", "--tta", "maybe", path.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("maybe"), "{}", stderr(&out));
}

/// `bench --reference` with a stand-in for Python that answers like the reference script: the
/// CLI runs its own side, asks the reference for PyTorch and ONNX Runtime at every inference
/// batch, and prints the ratio table.
#[test]
fn bench_reference_prints_ratios_against_the_reference_and_names_a_missing_torch() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("bench-ref");
    let script = dir.join("reference.py");
    std::fs::write(&script, "# stand-in; the fake interpreter ignores it\n").unwrap();
    let python = dir.join("fake-python");
    std::fs::write(
        &python,
        "#!/bin/sh\n\
         [ \"$1\" = -c ] && exit 0\n\
         echo '{\"what\":\"train\",\"batch\":8,\"framework\":\"pytorch\",\"img_per_s\":100.0,\"n\":5}'\n\
         echo '{\"what\":\"infer\",\"batch\":4,\"framework\":\"pytorch\",\"img_per_s\":400.0,\"n\":5}'\n\
         echo '{\"what\":\"ort\",\"batch\":4,\"framework\":\"onnxruntime\",\"img_per_s\":800.0,\"n\":5}'\n",
    )
    .unwrap();
    std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).unwrap();
    let args = |py: &std::path::Path| {
        vec![
            "bench".to_string(),
            "--reference".into(),
            "--preset".into(),
            "fast".into(),
            "--batch-size".into(),
            "8".into(),
            "--steps".into(),
            "1".into(),
            "--infer-batches".into(),
            "4".into(),
            "--rounds".into(),
            "1".into(),
            "--min-secs".into(),
            "0.01".into(),
            "--reference-script".into(),
            script.to_str().unwrap().into(),
            "--python".into(),
            py.to_str().unwrap().into(),
        ]
    };
    let a = args(&python);
    let out = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(table.contains("| training step, batch 8 |"), "{table}");
    let infer = table
        .lines()
        .find(|l| l.starts_with("| inference, batch 4 |"))
        .unwrap_or_else(|| panic!("{table}"));
    // synthscan's own rate, then the stand-in's 400 and 800, then two ratios.
    let cells: Vec<&str> = infer.split('|').map(str::trim).collect();
    assert_eq!((cells[3], cells[4]), ("400", "800"), "{infer}");
    let ours: f64 = cells[2].replace(',', "").parse().unwrap();
    assert!(ours > 0.0, "{infer}");
    assert!(
        cells[5].starts_with("**") && cells[6].starts_with("**"),
        "{infer}"
    );

    let b = args(std::path::Path::new("/bin/false"));
    let out = run(&b.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!out.status.success());
    assert!(stderr(&out).contains("import torch"), "{}", stderr(&out));

    // A reference that fails while measuring: its last error line, with the script named.
    let failing = dir.join("failing-python");
    std::fs::write(
        &failing,
        "#!/bin/sh
[ \"$1\" = -c ] && exit 0
echo 'no module named onnxruntime' >&2
exit 1
",
    )
    .unwrap();
    std::fs::set_permissions(&failing, std::fs::Permissions::from_mode(0o755)).unwrap();
    let c = args(&failing);
    let out = run(&c.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("reference.py failed: no module named onnxruntime")
            && err.lines().count() == 1,
        "{err}"
    );
}

/// Several `--model` flags evaluate one ensemble: the mean of the members' thresholds, no
/// uncertain band, every image counted once; `--max-fpr` (one model's budget) is refused.
#[test]
fn evaluate_with_several_models_scores_them_as_one_ensemble() {
    let dir = temp_dir("ensemble");
    make_dataset(&dir, 12, 32, 5);
    let wide = concat!(env!("CARGO_MANIFEST_DIR"), "/models/cifake-wide.synthscan");
    let eval = |models: &[&str]| -> Value {
        let mut args = vec!["evaluate", "--json", "--data", dir.to_str().unwrap()];
        for m in models {
            args.extend_from_slice(&["--model", m]);
        }
        let out = run(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_str(stdout(&out).trim()).unwrap()
    };
    let threshold = |v: &Value| v["threshold"].as_f64().unwrap();
    let default = concat!(env!("CARGO_MANIFEST_DIR"), "/models/default.synthscan");
    let (one, other) = (eval(&[]), eval(&[wide]));
    // The same model twice is that model.
    let twice = eval(&[wide, wide]);
    for k in ["accuracy", "roc_auc", "threshold", "count"] {
        assert_eq!(twice[k], other[k], "{k}");
    }
    let pair = eval(&[wide, default]);
    assert_eq!(pair["count"], 24);
    assert!((threshold(&pair) - (threshold(&one) + threshold(&other)) / 2.0).abs() < 1e-6);
    assert!(
        one.get("coverage").is_some() && pair.get("coverage").is_none(),
        "{pair}"
    );
    let mut args = vec![
        "evaluate",
        "--data",
        dir.to_str().unwrap(),
        "--max-fpr",
        "0.01",
    ];
    args.extend_from_slice(&["--model", wide, "--model", wide]);
    let out = run(&args);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--max-fpr"), "{}", stderr(&out));
}

/// `synthscan ensemble` writes several models as one file that every command taking a model
/// reads as those models: `evaluate` scores it as it scores the models given side by side,
/// `info` lists the members, `explain` draws the members' mean map; commands that change one
/// model (`calibrate`) refuse it, naming the file.
#[test]
fn an_ensemble_file_is_the_models_it_holds() {
    let dir = temp_dir("ensemble-file");
    make_dataset(&dir, 6, 32, 11);
    let root = env!("CARGO_MANIFEST_DIR");
    let (default, wide) = (
        format!("{root}/models/default.synthscan"),
        format!("{root}/models/cifake-wide.synthscan"),
    );
    let ens = dir.join("pair.synthscan");
    let e = ens.to_str().unwrap();
    let data = dir.to_str().unwrap();
    let out = run(&[
        "ensemble", "--model", &default, "--model", &wide, "--out", e,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("default + cifake-wide"),
        "{}",
        stdout(&out)
    );
    let eval = |models: &[&str]| -> Value {
        let mut args = vec!["evaluate", "--json", "--data", data];
        for m in models {
            args.extend_from_slice(&["--model", m]);
        }
        let out = run(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_str(stdout(&out).trim()).unwrap()
    };
    let (file, side) = (eval(&[e]), eval(&[&default, &wide]));
    for k in ["accuracy", "roc_auc", "threshold", "count", "ece"] {
        assert_eq!(file[k], side[k], "{k}");
    }
    let info = run(&["info", "--model", e]);
    assert!(info.status.success(), "{}", stderr(&info));
    let v: Value = serde_json::from_str(&stdout(&info)).unwrap();
    assert_eq!(v["ensemble"], "default + cifake-wide");
    assert_eq!(v["members"][1]["name"], "cifake-wide");
    let cam = dir.join("cam");
    let img = dir
        .join("FAKE")
        .read_dir()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let out = run(&[
        "explain",
        "--model",
        e,
        "--out",
        cam.to_str().unwrap(),
        img.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("layer=default:"), "{}", stdout(&out));
    let csv = std::fs::read_dir(&cam)
        .unwrap()
        .filter_map(|f| f.ok().map(|f| f.path()))
        .find(|p| p.to_string_lossy().ends_with(".cam.csv"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .unwrap();
    let values: Vec<f32> = csv
        .split([',', '\n'])
        .filter_map(|v| v.parse().ok())
        .collect();
    assert!(values.iter().all(|v| (0.0..=1.0).contains(v)) && values.contains(&1.0));
    for (args, says) in [
        (
            vec!["calibrate", "--model", e, "--data", data, "--out", "x"],
            "ensemble",
        ),
        (
            vec!["ensemble", "--model", &default, "--out", "x"],
            "at least two",
        ),
        (
            vec!["explain", "--model", e, "--layer", "stage2", data],
            "layer",
        ),
        (
            vec![
                "evaluate",
                "--model",
                e,
                "--data",
                data,
                "--max-fpr",
                "0.01",
            ],
            "--max-fpr",
        ),
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
        assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    }
}

/// `synthscan ensemble --data` fits the ensemble's own threshold and uncertain band on the
/// validation split, which `evaluate` then uses (coverage reported) and `--max-fpr` moves.
#[test]
fn an_ensemble_calibrated_on_validation_has_its_own_band() {
    let dir = temp_dir("ensemble-calibrated");
    make_dataset(&dir, 20, 32, 13);
    let cfg = dir.join("val.yaml");
    std::fs::write(
        &cfg,
        "model: {preset: default}\ndata: {val_fraction: 0.4}\n",
    )
    .unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let (default, wide) = (
        format!("{root}/models/default.synthscan"),
        format!("{root}/models/cifake-wide.synthscan"),
    );
    let ens = dir.join("cal.synthscan");
    let (e, data) = (ens.to_str().unwrap(), dir.to_str().unwrap());
    let out = run(&[
        "ensemble",
        "--model",
        &default,
        "--model",
        &wide,
        "--data",
        data,
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        e,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let info: Value = serde_json::from_str(&stdout(&run(&["info", "--model", e]))).unwrap();
    let images = info["calibration"]["facts"]["images"].as_u64().unwrap_or(0);
    assert_eq!(images, 16, "40 % of 20 images per class: {info}");
    assert!(
        stderr(&out).contains("calibrated on 16 validation images"),
        "{}",
        stderr(&out)
    );
    let eval = |extra: &[&str]| -> Value {
        let mut args = vec!["evaluate", "--json", "--model", e, "--data", data];
        args.extend_from_slice(extra);
        let out = run(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_str(stdout(&out).trim()).unwrap()
    };
    let v = eval(&[]);
    let t = info["calibration"]["threshold"].as_f64().unwrap();
    assert!(
        (v["threshold"].as_f64().unwrap() - t).abs() < 1e-6,
        "{v} {info}"
    );
    assert!(
        v.get("coverage").is_some(),
        "a calibrated ensemble answers UNCERTAIN: {v}"
    );
    let strict = eval(&["--max-fpr", "0.0"]);
    assert!(
        strict["threshold"].as_f64() >= v["threshold"].as_f64(),
        "{strict}"
    );
}

/// Several `--model` flags on `predict`: each image's `p_fake` is the mean of the models'
/// own, decided against the mean of their thresholds, the model named after both; a bad file
/// is still one error line.
#[test]
fn predict_with_several_models_answers_their_mean() {
    let dir = temp_dir("predict-ensemble");
    make_dataset(&dir, 3, 32, 9);
    std::fs::write(dir.join("REAL/broken.png"), b"not a png").unwrap();
    let wide = concat!(env!("CARGO_MANIFEST_DIR"), "/models/cifake-wide.synthscan");
    let default = concat!(env!("CARGO_MANIFEST_DIR"), "/models/default.synthscan");
    let predict = |models: &[&str]| -> Vec<Value> {
        let mut args = vec!["predict", "--json"];
        for m in models {
            args.extend_from_slice(&["--model", m]);
        }
        args.push(dir.to_str().unwrap());
        let out = run(&args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "the broken file fails: {}",
            stderr(&out)
        );
        let lines = stdout(&out);
        lines
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (a, b, both) = (
        predict(&[wide]),
        predict(&[default]),
        predict(&[wide, default]),
    );
    assert_eq!(both.len(), 7);
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap();
    let mut scored = 0;
    for ((x, y), m) in a.iter().zip(&b).zip(&both) {
        assert_eq!(x["path"], m["path"]);
        if x.get("error").is_some() {
            assert!(m["error"].as_str().unwrap().contains("broken.png"), "{m}");
            continue;
        }
        scored += 1;
        let mean = (f(x, "p_fake") + f(y, "p_fake")) / 2.0;
        assert!((f(m, "p_fake") - mean).abs() < 1e-5, "{m} vs {x} {y}");
        let threshold = (f(x, "threshold") + f(y, "threshold")) / 2.0;
        assert!((f(m, "threshold") - threshold).abs() < 1e-6, "{m}");
        let label = if f(m, "p_fake") >= f(m, "threshold") {
            "FAKE"
        } else {
            "REAL"
        };
        assert_eq!(m["label"], label, "{m}");
        assert_eq!(m["model"], "cifake-wide + default");
    }
    assert_eq!(scored, 6);
}

/// A folder of the formats cameras and phones write (tests/fixtures/formats: JPEG, PNG, WebP,
/// TIFF, AVIF, HEIC): every file found is scored or named in an error line saying which format
/// this build cannot decode, and the summary counts both. The AVIF was written by Pillow; the
/// HEIC is the start of one (its `ftyp heic` box), as no HEIC encoder is installed here.
#[test]
fn every_image_format_found_is_scored_or_named() {
    let dir = temp_dir("formats");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/formats");
    for e in std::fs::read_dir(&fixtures).unwrap() {
        let path = e.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    let folder = dir.to_str().unwrap();
    let out = run(&["predict", "--json", folder]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |name: &str| {
        lines
            .iter()
            .find(|v| v["path"].as_str().unwrap().ends_with(name))
            .unwrap_or_else(|| panic!("{name} not reported: {}", stdout(&out)))
    };
    for name in ["photo.jpg", "photo.png", "photo.webp", "photo.tif"] {
        let v = find(name);
        assert!(v["error"].is_null(), "{name}: {v}");
        assert_eq!(
            (v["width"].as_u64(), v["height"].as_u64()),
            (Some(48), Some(40))
        );
        assert!(
            matches!(v["label"].as_str(), Some("REAL" | "FAKE" | "UNCERTAIN")),
            "{v}"
        );
    }
    for (name, format) in [("photo.heic", "HEIC"), ("photo.avif", "AVIF")] {
        let e = find(name)["error"].as_str().unwrap_or_default().to_string();
        assert!(
            e.contains(&format!("{format} is not supported by this build")),
            "{e}"
        );
        assert!(e.contains(name), "{e}");
    }
    assert_eq!(lines.len(), 6, "{}", stdout(&out));
    assert!(
        stderr(&out).contains("6 files: 4 scored, 2 not scored"),
        "{}",
        stderr(&out)
    );
    // Text output: one error line per unscored file, the summary, no bar off a terminal.
    let out = run(&["predict", folder]);
    let err = stderr(&out);
    assert_eq!(err.matches("error: ").count(), 2, "{err}");
    assert!(err.contains("6 files: 4 scored, 2 not scored"), "{err}");
    assert!(
        !err.contains("files  ") && !err.contains("images/s"),
        "{err}"
    );
    let quiet = run(&["predict", "--quiet", folder]);
    assert!(!stderr(&quiet).contains("6 files"), "{}", stderr(&quiet));
    std::fs::remove_dir_all(&dir).unwrap();
}
