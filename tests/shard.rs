//! `predict --shard i/n`: the shards are disjoint, their union is every file, and the
//! assignment does not depend on where the collection is.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

/// Paths relative to `root` of the files one shard scores (all succeed on generated images).
fn shard_files(root: &Path, shard: &str) -> Vec<String> {
    let out = common::run(&[
        "predict",
        "--json",
        "--shard",
        shard,
        root.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{shard}: {}", common::stderr(&out));
    common::stdout(&out)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert!(v["p_fake"].as_f64().is_some(), "{v}");
            let p = Path::new(v["path"].as_str().unwrap());
            p.strip_prefix(root).unwrap().to_string_lossy().into_owned()
        })
        .collect()
}

#[test]
fn predict_shards_are_disjoint_and_cover_everything() {
    let dir = common::temp_dir("shard");
    let (a, b) = (dir.join("a"), dir.join("elsewhere/b"));
    common::make_dataset(&a, 30, 16, 5);
    common::make_dataset(&b, 30, 16, 5);
    let all: BTreeSet<String> = synthscan::data::list_images(&a)
        .unwrap()
        .iter()
        .map(|p| p.strip_prefix(&a).unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(all.len(), 60);
    let n = 3;
    let mut union = BTreeSet::new();
    let mut sizes = Vec::new();
    for i in 0..n {
        let mut files = shard_files(&a, &format!("{i}/{n}"));
        sizes.push(files.len());
        for f in &files {
            assert!(union.insert(f.clone()), "{f} is in two shards");
        }
        // The same files at another location form the same shard.
        let mut there = shard_files(&b, &format!("{i}/{n}"));
        files.sort();
        there.sort();
        assert_eq!(files, there);
    }
    assert_eq!(union, all, "the shards together are the whole set");
    assert!(sizes.iter().all(|&s| s > 0), "{sizes:?}");
    let whole = shard_files(&a, "0/1");
    assert_eq!(whole.len(), 60);
}

#[test]
fn bad_shard_specs_are_refused() {
    for bad in ["3/3", "1/0", "x/2", "2"] {
        let out = common::run(&["predict", "--shard", bad, "."]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(
            common::stderr(&out).contains("shard"),
            "{bad}: {}",
            common::stderr(&out)
        );
    }
}
