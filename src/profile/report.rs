//! A profiled pass as tables: time per op (with the page faults and system time it took on the
//! CPU) and per module of the diffusers tree (inclusive time, and which ops it went to), the
//! median of several passes, printed as text and written as JSON.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write;

/// One recorded op call: (ms, page faults, system ms).
pub(super) struct OpSample {
    pub name: &'static str,
    pub module: Option<usize>,
    pub cost: (f64, u64, f64),
}

/// One recorded module range.
pub(super) struct ModuleSample {
    pub path: String,
    pub parent: Option<usize>,
    pub ms: f64,
}

/// The time of one op name over a pass.
#[derive(Debug, Clone, PartialEq)]
pub struct OpRow {
    pub name: String,
    pub calls: usize,
    pub ms: f64,
    /// Minor page faults of the process during these calls (CPU; 0 on a GPU).
    pub faults: u64,
    /// System CPU time of the process during these calls (CPU; 0 on a GPU).
    pub sys_ms: f64,
}

/// One module of the tree: its inclusive time and the ops inside it (children included).
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleRow {
    /// The range's name: the module's path in the diffusers tree (`up_blocks.1.resnets.0`).
    pub path: String,
    /// Ranges open around it.
    pub depth: usize,
    pub calls: usize,
    pub ms: f64,
    /// (op name, ms) inside the module, largest first.
    pub ops: Vec<(String, f64)>,
}

/// Where one pass's time went (or the per-entry median of several passes).
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub device: String,
    pub passes: usize,
    /// The whole pass, from `start` to `stop`.
    pub total_ms: f64,
    /// Largest first.
    pub ops: Vec<OpRow>,
    /// In the order the ranges opened (the tree in pre-order).
    pub modules: Vec<ModuleRow>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

fn sorted_ops(by: BTreeMap<String, f64>) -> Vec<(String, f64)> {
    let mut v: Vec<_> = by.into_iter().collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

impl Profile {
    pub(super) fn from_samples(device: &str, total: (f64, u64, f64), ops: &[OpSample], modules: &[ModuleSample]) -> Profile {
        let mut by_name: BTreeMap<&str, OpRow> = BTreeMap::new();
        for o in ops {
            let row = by_name.entry(o.name).or_insert_with(|| OpRow { name: o.name.to_string(), calls: 0, ms: 0.0, faults: 0, sys_ms: 0.0 });
            row.calls += 1;
            row.ms += o.cost.0;
            row.faults += o.cost.1;
            row.sys_ms += o.cost.2;
        }
        let mut op_rows: Vec<OpRow> = by_name.into_values().collect();
        op_rows.sort_by(|a, b| b.ms.total_cmp(&a.ms).then_with(|| a.name.cmp(&b.name)));

        // Each op's time goes to its module and every module around it.
        let mut inside: Vec<BTreeMap<String, f64>> = vec![BTreeMap::new(); modules.len()];
        for o in ops {
            let mut m = o.module;
            while let Some(i) = m {
                *inside[i].entry(o.name.to_string()).or_default() += o.cost.0;
                m = modules[i].parent;
            }
        }
        let depth = |mut i: usize| {
            let mut d = 0;
            while let Some(p) = modules[i].parent {
                d += 1;
                i = p;
            }
            d
        };
        // Rows by path, in first-open order; a path opened again adds to its row.
        let mut rows: Vec<ModuleRow> = Vec::new();
        let mut row_of: BTreeMap<&str, usize> = BTreeMap::new();
        let mut row_ops: Vec<BTreeMap<String, f64>> = Vec::new();
        for (i, m) in modules.iter().enumerate() {
            let r = *row_of.entry(&m.path).or_insert_with(|| {
                rows.push(ModuleRow { path: m.path.clone(), depth: depth(i), calls: 0, ms: 0.0, ops: Vec::new() });
                row_ops.push(BTreeMap::new());
                rows.len() - 1
            });
            rows[r].calls += 1;
            rows[r].ms += m.ms;
            for (name, ms) in &inside[i] {
                *row_ops[r].entry(name.clone()).or_default() += ms;
            }
        }
        for (row, ops) in rows.iter_mut().zip(row_ops) {
            row.ops = sorted_ops(ops);
        }
        Profile { device: device.to_string(), passes: 1, total_ms: total.0, ops: op_rows, modules: rows }
    }

    /// The median of each figure over `passes` (an entry missing from a pass counts as 0 there).
    /// The rows keep the first pass's order, ops re-sorted by their median time.
    pub fn median(passes: &[Profile]) -> Option<Profile> {
        let first = passes.first()?;
        let op_names: Vec<&str> = {
            let mut seen: Vec<&str> = Vec::new();
            for p in passes {
                for o in &p.ops {
                    if !seen.contains(&o.name.as_str()) {
                        seen.push(&o.name);
                    }
                }
            }
            seen
        };
        let mut ops: Vec<OpRow> = op_names
            .iter()
            .map(|&name| {
                let rows: Vec<Option<&OpRow>> = passes.iter().map(|p| p.ops.iter().find(|o| o.name == name)).collect();
                let fig = |f: &dyn Fn(&OpRow) -> f64| median(rows.iter().map(|r| r.map_or(0.0, f)).collect());
                OpRow {
                    name: name.to_string(),
                    calls: fig(&|o| o.calls as f64).round() as usize,
                    ms: fig(&|o| o.ms),
                    faults: fig(&|o| o.faults as f64).round() as u64,
                    sys_ms: fig(&|o| o.sys_ms),
                }
            })
            .collect();
        ops.sort_by(|a, b| b.ms.total_cmp(&a.ms).then_with(|| a.name.cmp(&b.name)));
        let modules = first
            .modules
            .iter()
            .map(|m| {
                let rows: Vec<Option<&ModuleRow>> = passes.iter().map(|p| p.modules.iter().find(|r| r.path == m.path)).collect();
                let mut by: BTreeMap<String, f64> = BTreeMap::new();
                for (name, _) in &m.ops {
                    let per: Vec<f64> = rows.iter().map(|r| r.and_then(|r| r.ops.iter().find(|o| &o.0 == name)).map_or(0.0, |o| o.1)).collect();
                    by.insert(name.clone(), median(per));
                }
                ModuleRow {
                    path: m.path.clone(),
                    depth: m.depth,
                    calls: m.calls,
                    ms: median(rows.iter().map(|r| r.map_or(0.0, |r| r.ms)).collect()),
                    ops: sorted_ops(by),
                }
            })
            .collect();
        Some(Profile {
            device: first.device.clone(),
            passes: passes.len(),
            total_ms: median(passes.iter().map(|p| p.total_ms).collect()),
            ops,
            modules,
        })
    }

    /// Time spent in no op: the models' own code between ops.
    pub fn outside_ops_ms(&self) -> f64 {
        (self.total_ms - self.ops.iter().map(|o| o.ms).sum::<f64>()).max(0.0)
    }

    /// The two tables as text: ops, then modules down to `max_depth` ranges deep (0: only the
    /// outermost), each with its three largest ops.
    pub fn table(&self, max_depth: usize) -> String {
        let pct = |ms: f64| if self.total_ms > 0.0 { 100.0 * ms / self.total_ms } else { 0.0 };
        let cpu = self.device == "cpu";
        let mut s = String::new();
        let how = if cpu { "wall clock" } else { "CUDA events" };
        let _ = writeln!(s, "profile on {} ({how}), median of {} pass(es): {:.1} ms per pass", self.device, self.passes, self.total_ms);
        let _ = write!(s, "{:<22} {:>6} {:>10} {:>6}", "op", "calls", "ms", "%");
        if cpu {
            let _ = write!(s, " {:>9} {:>8}", "faults", "sys ms");
        }
        s.push('\n');
        for o in &self.ops {
            let _ = write!(s, "{:<22} {:>6} {:>10.1} {:>6.1}", o.name, o.calls, o.ms, pct(o.ms));
            if cpu {
                let _ = write!(s, " {:>9} {:>8.1}", o.faults, o.sys_ms);
            }
            s.push('\n');
        }
        let out = self.outside_ops_ms();
        let _ = writeln!(s, "{:<22} {:>6} {:>10.1} {:>6.1}", "(outside ops)", "", out, pct(out));
        let _ = writeln!(s, "\n{:<52} {:>10} {:>6}  largest ops inside", "module (inclusive)", "ms", "%");
        for m in self.modules.iter().filter(|m| m.depth <= max_depth) {
            let name = format!("{}{}", "  ".repeat(m.depth), m.path);
            let top: Vec<String> =
                m.ops.iter().take(3).map(|(n, ms)| format!("{n} {:.0}%", if m.ms > 0.0 { 100.0 * ms / m.ms } else { 0.0 })).collect();
            let _ = writeln!(s, "{name:<52} {:>10.1} {:>6.1}  {}", m.ms, pct(m.ms), top.join(", "));
        }
        s
    }

    pub fn to_json(&self) -> Value {
        json!({
            "device": self.device,
            "timing": if self.device == "cpu" { "wall clock" } else { "CUDA events" },
            "passes": self.passes,
            "total_ms": self.total_ms,
            "outside_ops_ms": self.outside_ops_ms(),
            "ops": self.ops.iter().map(|o| json!({
                "name": o.name, "calls": o.calls, "ms": o.ms, "faults": o.faults, "sys_ms": o.sys_ms,
            })).collect::<Vec<_>>(),
            "modules": self.modules.iter().map(|m| json!({
                "path": m.path, "depth": m.depth, "calls": m.calls, "ms": m.ms,
                "ops": m.ops.iter().map(|(n, ms)| json!({"name": n, "ms": ms})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(conv_ms: f64) -> Profile {
        let modules = vec![
            ModuleSample { path: "unet".into(), parent: None, ms: 10.0 },
            ModuleSample { path: "down_blocks.0".into(), parent: Some(0), ms: 6.0 },
        ];
        let ops = vec![
            OpSample { name: "conv2d 3x3", module: Some(1), cost: (conv_ms, 3, 0.5) },
            OpSample { name: "add", module: Some(0), cost: (1.0, 0, 0.0) },
            OpSample { name: "conv2d 3x3", module: Some(1), cost: (1.0, 1, 0.0) },
        ];
        Profile::from_samples("cpu", (10.0, 0, 0.0), &ops, &modules)
    }

    #[test]
    fn ops_are_summed_by_name_and_charged_to_every_enclosing_module() {
        let p = pass(4.0);
        assert_eq!(p.ops[0], OpRow { name: "conv2d 3x3".into(), calls: 2, ms: 5.0, faults: 4, sys_ms: 0.5 });
        assert_eq!(p.ops[1].name, "add");
        assert_eq!(p.outside_ops_ms(), 4.0);
        assert_eq!(p.modules[0].depth, 0);
        assert_eq!(p.modules[1].depth, 1);
        assert_eq!(p.modules[0].ops, vec![("conv2d 3x3".to_string(), 5.0), ("add".to_string(), 1.0)]);
        assert_eq!(p.modules[1].ops, vec![("conv2d 3x3".to_string(), 5.0)]);
    }

    #[test]
    fn the_median_is_taken_per_entry() {
        let m = Profile::median(&[pass(4.0), pass(2.0), pass(9.0)]).unwrap();
        assert_eq!(m.passes, 3);
        assert_eq!(m.ops[0].ms, 5.0);
        assert_eq!(m.modules[1].ops[0].1, 5.0);
        let text = m.table(1);
        assert!(text.contains("down_blocks.0") && text.contains("conv2d 3x3") && text.contains("(outside ops)"), "{text}");
        assert_eq!(m.to_json()["ops"][0]["calls"], 2);
    }
}
