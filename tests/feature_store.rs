//! The feature store: shards written and read back by index, resume, failures, bad requests.

mod common;

use revelio::features::store::{Failure, ImageEntry, Manifest, FeatureStore, FeatureStoreWriter, STORE_FORMAT};
use revelio::{DType, Device, Tensor};

fn manifest(n: usize) -> Manifest {
    Manifest {
        format: STORE_FORMAT.into(),
        model: "tiny".into(),
        model_config_hash: "0".into(),
        layers: vec!["mid".into()],
        timesteps: vec![25],
        pooling: "mean".into(),
        dtype: "f32".into(),
        seed: 7,
        settings: Default::default(),
        images: (0..n)
            .map(|i| ImageEntry { path: format!("img{i}.png"), label: (i % 3) as i64, split: if i < 6 { "train".into() } else { "test".into() }, caption: None, prompt: None })
            .collect(),
        class_names: vec!["a".into(), "b".into(), "c".into()],
        feature_shapes: Default::default(),
        shards: vec![],
        failures: vec![],
    }
}

/// Features of image i are [i, i + 0.5, i + 0.25]: easy to check after any read.
fn rows(start: usize, count: usize) -> Tensor {
    let v: Vec<f32> = (start..start + count).flat_map(|i| [i as f32, i as f32 + 0.5, i as f32 + 0.25]).collect();
    Tensor::from_vec(v, [count, 3], &Device::Cpu).unwrap()
}

#[test]
fn shards_read_back_by_index_in_any_order() {
    let dir = std::env::temp_dir().join(format!("revelio-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut w = FeatureStoreWriter::create_or_resume(&dir, manifest(8)).unwrap();
    w.write_shard(0, 5, &[(("mid".into(), 25), rows(0, 5))], &[]).unwrap();
    let failure = Failure { index: 6, path: "img6.png".into(), error: "truncated".into() };
    w.write_shard(5, 3, &[(("mid".into(), 25), rows(5, 3))], &[failure]).unwrap();

    let store = FeatureStore::open(&dir).unwrap();
    assert_eq!(store.len(), 8);
    assert_eq!(store.feature_shape("mid", 25).unwrap(), vec![3]);
    let got = store.read("mid", 25, &[7, 2, 3, 4, 5, 0], DType::F32, &Device::Cpu).unwrap();
    assert_eq!(got.dims(), &[6, 3]);
    let want: Vec<f32> = [7, 2, 3, 4, 5, 0].iter().flat_map(|&i| [i as f32, i as f32 + 0.5, i as f32 + 0.25]).collect();
    assert_eq!(got.to_f32_vec().unwrap(), want);
    assert_eq!(store.split_indices("train"), vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(store.split_indices("test"), vec![7], "failed image 6 is skipped");
    assert_eq!(store.labels(), vec![0, 1, 2, 0, 1, 2, 0, 1]);

    let err = store.read("up.1", 25, &[0], DType::F32, &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("up.1") && err.contains("mid"), "{err}");
    let err = store.read("mid", 25, &[8], DType::F32, &Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("image 8"), "{err}");

    // Resuming with the same settings keeps the shards; other settings are refused.
    let w = FeatureStoreWriter::create_or_resume(&dir, manifest(8)).unwrap();
    assert!(w.has_shard(0, 5) && w.has_shard(5, 3));
    let mut other = manifest(8);
    other.seed = 8;
    assert!(FeatureStoreWriter::create_or_resume(&dir, other).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
