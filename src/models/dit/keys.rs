//! Original facebookresearch/DiT key names -> diffusers' `DiTTransformer2DModel` names, for
//! `Weights::from_files_mapped`: renames, one tensor transform (the stacked `attn.qkv` [3D, ..]
//! sliced into to_q, to_k, to_v) and one fan-out (the single timestep and label embedder serves
//! every block's `norm1.emb`, as diffusers' `scripts/convert_dit_to_diffusers.py` copies it).

use crate::models::weights::Transform;

/// The original checkpoint's fixed position-embedding buffer [1, T, D]: not a weight (we
/// compute it); checked against ours at load, then allowed to stay unused.
pub const ORIGINAL_POS_EMBED: &str = "pos_embed";

/// The diffusers keys (each with its transform) that the original checkpoint's tensor `stored`
/// provides in a model of `num_layers` blocks. A key the map does not know keeps its own name,
/// so that loading names it as an extra tensor (or, for `pos_embed`, checks it).
pub fn diffusers_keys(stored: &str, num_layers: usize) -> Vec<(String, Transform)> {
    let one = |k: String| vec![(k, Transform::Identity)];
    let every_block = |module: &str, p: &str| -> Vec<(String, Transform)> {
        (0..num_layers).map(|n| (format!("transformer_blocks.{n}.norm1.emb.{module}.{p}"), Transform::Identity)).collect()
    };
    let Some((module, p)) = stored.rsplit_once('.') else {
        return one(stored.to_string());
    };
    match module {
        "x_embedder.proj" => return one(format!("pos_embed.proj.{p}")),
        "t_embedder.mlp.0" => return every_block("timestep_embedder.linear_1", p),
        "t_embedder.mlp.2" => return every_block("timestep_embedder.linear_2", p),
        "y_embedder.embedding_table" => return every_block("class_embedder.embedding_table", p),
        "final_layer.adaLN_modulation.1" => return one(format!("proj_out_1.{p}")),
        "final_layer.linear" => return one(format!("proj_out_2.{p}")),
        _ => {}
    }
    let block = module.strip_prefix("blocks.").and_then(|r| r.split_once('.')).filter(|(n, _)| n.parse::<usize>().is_ok());
    let Some((n, sub)) = block else {
        return one(stored.to_string());
    };
    let b = format!("transformer_blocks.{n}");
    match sub {
        "attn.qkv" => ["to_q", "to_k", "to_v"]
            .iter()
            .enumerate()
            .map(|(i, m)| (format!("{b}.attn1.{m}.{p}"), Transform::Slice { index: i, parts: 3 }))
            .collect(),
        "attn.proj" => one(format!("{b}.attn1.to_out.0.{p}")),
        "mlp.fc1" => one(format!("{b}.ff.net.0.proj.{p}")),
        "mlp.fc2" => one(format!("{b}.ff.net.2.{p}")),
        "adaLN_modulation.1" => one(format!("{b}.norm1.linear.{p}")),
        _ => one(stored.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single(stored: &str) -> (String, Transform) {
        let v = diffusers_keys(stored, 28);
        assert_eq!(v.len(), 1, "{stored} -> {v:?}");
        v.into_iter().next().unwrap()
    }

    #[test]
    fn maps_every_original_key() {
        let renames = [
            ("x_embedder.proj.weight", "pos_embed.proj.weight"),
            ("x_embedder.proj.bias", "pos_embed.proj.bias"),
            ("blocks.12.adaLN_modulation.1.weight", "transformer_blocks.12.norm1.linear.weight"),
            ("blocks.1.attn.proj.weight", "transformer_blocks.1.attn1.to_out.0.weight"),
            ("blocks.1.mlp.fc1.bias", "transformer_blocks.1.ff.net.0.proj.bias"),
            ("blocks.1.mlp.fc2.weight", "transformer_blocks.1.ff.net.2.weight"),
            ("final_layer.adaLN_modulation.1.weight", "proj_out_1.weight"),
            ("final_layer.linear.bias", "proj_out_2.bias"),
            // kept as is: the buffer, and anything the map does not know (named at load)
            ("pos_embed", "pos_embed"),
            ("blocks.1.norm2.weight", "blocks.1.norm2.weight"),
            ("blocks.x.attn.qkv.weight", "blocks.x.attn.qkv.weight"),
        ];
        for (stored, model) in renames {
            assert_eq!(single(stored), (model.to_string(), Transform::Identity), "{stored}");
        }
        let qkv = diffusers_keys("blocks.12.attn.qkv.bias", 28);
        let want: Vec<(String, Transform)> = ["to_q", "to_k", "to_v"]
            .iter()
            .enumerate()
            .map(|(i, m)| (format!("transformer_blocks.12.attn1.{m}.bias"), Transform::Slice { index: i, parts: 3 }))
            .collect();
        assert_eq!(qkv, want);
        let shared = [
            ("t_embedder.mlp.0.weight", "timestep_embedder.linear_1.weight"),
            ("t_embedder.mlp.2.bias", "timestep_embedder.linear_2.bias"),
            ("y_embedder.embedding_table.weight", "class_embedder.embedding_table.weight"),
        ];
        for (stored, tail) in shared {
            let v = diffusers_keys(stored, 3);
            let want: Vec<(String, Transform)> = (0..3).map(|n| (format!("transformer_blocks.{n}.norm1.emb.{tail}"), Transform::Identity)).collect();
            assert_eq!(v, want, "{stored}");
        }
    }
}
