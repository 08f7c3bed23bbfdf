//! Pretrained weights through the CLI: `synthscan import`, `weights:` in an experiment file, and
//! the errors a wrong file gives. Uses the committed width-4 torchvision-layout fixtures.

mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn import_makes_a_detector_that_predicts_and_keeps_imagenet_normalisation() {
    let dir = temp_dir("import");
    let model = dir.join("r18.synthscan");
    let out = run(&[
        "import",
        fixture("tvresnet18_w4.pth").to_str().unwrap(),
        "--arch",
        "resnet18",
        "--width",
        "4",
        "--input-size",
        "48",
        "--out",
        model.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // 20 convolution/batch-norm groups of a ResNet-18 = 100 tensors, fc replaced.
    assert!(
        stdout(&out).contains("100 tensors loaded, 2 classifier tensors"),
        "{}",
        stdout(&out)
    );
    let info = run(&["info", "--model", model.to_str().unwrap()]);
    assert!(info.status.success(), "{}", stderr(&info));
    let meta: Value = serde_json::from_str(&stdout(&info)).unwrap();
    assert_eq!(meta["arch"]["arch"], "tvresnet");
    assert_eq!(
        meta["normalization"]["mean"][0].as_f64().unwrap(),
        0.485f32 as f64
    );
    assert_eq!(meta["layers"][4], "layer4");
    make_dataset(&dir.join("imgs"), 2, 80, 3);
    let pred = run(&[
        "predict",
        "--json",
        "--model",
        model.to_str().unwrap(),
        dir.join("imgs").to_str().unwrap(),
    ]);
    assert!(pred.status.success(), "{}", stderr(&pred));
    assert_eq!(stdout(&pred).lines().count(), 4);
}

#[test]
fn wrong_architecture_lists_the_keys_by_name_and_fails() {
    let dir = temp_dir("import-wrong");
    let out = run(&[
        "import",
        fixture("tvresnet50_w4.safetensors").to_str().unwrap(),
        "--arch",
        "resnet34",
        "--width",
        "4",
        "--out",
        dir.join("m.synthscan").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("tvresnet50_w4.safetensors"), "{err}");
    assert!(err.contains("layer1.0.conv3.weight"), "{err}");
    assert!(
        err.contains("layer2.0.conv1.weight: file has shape"),
        "{err}"
    );
    assert!(!dir.join("m.synthscan").exists());
}

#[test]
fn training_from_imported_weights_with_a_frozen_backbone() {
    let dir = temp_dir("weights-yaml");
    make_dataset(&dir.join("data"), 12, 40, 5);
    let cfg = dir.join("ft.yaml");
    std::fs::write(
        &cfg,
        format!(
            "name: ft\nseed: 3\nmodel: {{arch: tvresnet, depth: 18, width: 4, hidden: [8], hidden_batch_norm: true, dropout: 0.5}}\n\
             weights: {}\nfreeze_backbone: true\ninput_size: 40\nepochs: 1\nbatch_size: 8\n\
             optimizer: {{kind: adam, lr: 0.003}}\ndata: {{val_fraction: 0.25}}\n",
            fixture("tvresnet18_w4.pth").display()
        ),
    )
    .unwrap();
    let out = run(&[
        "train",
        "--quiet",
        "--config",
        cfg.to_str().unwrap(),
        "--data",
        dir.join("data").to_str().unwrap(),
        "--out",
        dir.join("runs").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let model = stdout(&out).lines().last().unwrap().to_string();
    let info: Value = serde_json::from_str(&stdout(&run(&["info", "--model", &model]))).unwrap();
    assert_eq!(
        info["normalization"]["std"][2].as_f64().unwrap(),
        0.225f32 as f64
    );
    // Weights that do not fit the architecture stop the run, naming the tensors.
    let bad = cfg.with_extension("bad.yaml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("depth: 18", "depth: 34"),
    )
    .unwrap();
    let out = run(&[
        "train",
        "--quiet",
        "--config",
        bad.to_str().unwrap(),
        "--data",
        dir.join("data").to_str().unwrap(),
        "--out",
        dir.join("runs").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("layer3.5.conv1.weight"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_realworld_model_is_reachable_by_name_from_any_folder() {
    let dir = temp_dir("named-model");
    make_dataset(&dir.join("imgs"), 1, 300, 9);
    let out = bin()
        .current_dir(&dir)
        .args(["info", "--model", "realworld"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let meta: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(meta["arch"]["arch"], "efficientnet");
    assert_eq!(meta["input_size"], 224);
    assert_eq!(meta["layers"][8], "head_conv");
    let t = meta["threshold"].as_f64().unwrap();
    assert!(t > 0.0 && t < 1.0, "{t}");
    let out = bin()
        .current_dir(&dir)
        .args(["predict", "--json", "--model", "realworld", "imgs"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l["p_fake"].as_f64().is_some()));
    assert!(lines.iter().all(|l| l["model"] == "realworld"), "{lines:?}");
    // A name that is neither a file nor a built-in model is an error naming it.
    let out = bin()
        .current_dir(&dir)
        .args(["info", "--model", "realworld2"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("realworld2"), "{}", stderr(&out));
}
