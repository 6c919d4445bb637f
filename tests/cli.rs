//! The `revelio` binary: commands a user runs, their output and their errors.

use std::io::Write;
use std::process::{Command, Stdio};

fn revelio() -> Command {
    Command::new(env!("CARGO_BIN_EXE_revelio"))
}

#[test]
fn info_reports_and_succeeds_without_a_gpu() {
    let out = revelio().arg("info").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("revelio "), "{text}");
    assert!(text.contains("devices:") && text.contains("kernels:"), "{text}");
}

#[test]
fn tokenize_reads_stdin_and_prints_padded_ids() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tokenizer/vocab");
    let mut child = revelio()
        .args(["tokenize", "--tokenizer", dir, "--max-length", "8"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"a photo of a cat\n\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(lines, ["[49406,320,1125,539,320,2368,49407,49407]", "[49406,49407,49407,49407,49407,49407,49407,49407]"]);
}

#[test]
fn bad_tokenizer_folder_is_a_clear_error() {
    let out = revelio().args(["tokenize", "--tokenizer", "/nonexistent/tok"]).stdin(Stdio::null()).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("/nonexistent/tok") && err.starts_with("error:"), "{err}");
}

#[test]
fn cuda_device_without_a_gpu_says_why() {
    // Only meaningful where no GPU is present (CI); with a GPU the parse succeeds.
    if !matches!(revelio::cuda::probe(), revelio::cuda::Probe::Devices(_)) {
        let err = revelio::Device::parse("cuda").unwrap_err().to_string();
        assert!(err.contains("cuda"), "{err}");
        assert!(revelio::Device::parse("auto").unwrap().is_cpu());
    }
    assert!(revelio::Device::parse("tpu").is_err());
}
