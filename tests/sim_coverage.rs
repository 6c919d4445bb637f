//! Every kernel of the Rust kernel table (src/cuda/kernels.rs) was launched by some test on the
//! simulated device. The simulator appends the names of the kernels each process ran to the file
//! named by REVELIO_SIM_COVERAGE; CI runs tests/gpu (under every thread order) with it set, then
//! this test. It needs that file, so it is ignored by default:
//!
//!     REVELIO_SIM_COVERAGE=target/sim/coverage.txt cargo test --release --test sim_coverage -- --include-ignored

use std::collections::BTreeSet;

#[test]
#[ignore = "reads the kernels the simulated device ran (REVELIO_SIM_COVERAGE, after tests/gpu)"]
fn every_kernel_was_launched_on_the_simulator() {
    let path = std::env::var("REVELIO_SIM_COVERAGE").expect("set REVELIO_SIM_COVERAGE to the file tests/gpu appended to");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e} (run tests/gpu on the simulator first)"));
    let ran: BTreeSet<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let table: BTreeSet<String> = revelio::cuda::kernels::all().flat_map(|k| k.names()).collect();
    let missed: Vec<&String> = table.iter().filter(|k| !ran.contains(k.as_str())).collect();
    assert!(missed.is_empty(), "{} of {} kernels were never launched by a test: {missed:?}", missed.len(), table.len());
    let unknown: Vec<&&str> = ran.iter().filter(|k| !table.contains(**k)).collect();
    assert!(unknown.is_empty(), "kernels ran that the table does not list: {unknown:?}");
    println!("all {} kernels of the table were launched", table.len());
}
