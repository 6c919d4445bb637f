//! The feature explorer in a real browser: the tiny demo's report (and two made from bad input:
//! images moved away with a latent that does not exist asked for, and an empty split) checked as
//! files, then opened in headless Chromium, its scripts run, and the resulting DOM checked: every
//! image loaded, the search finds a latent by label and by id, sorting reorders the rows, a
//! latent's page shows its heat maps, histogram, class bars and nearest latents; an unknown
//! latent, moved images and an empty split give pages that say so.
//!
//! Chromium is driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON
//! messages ending in NUL, commands on fd 3, replies on fd 4), so the test needs no websocket
//! and no package beyond the browser. It is found at $REVELIO_CHROMIUM, else `chromium`,
//! `chromium-browser`, `google-chrome` on the PATH. Without one the test says SKIPPED and
//! passes, unless REVELIO_REQUIRE_BROWSER is set (as .ci/run sets it): then it fails.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

fn browser() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("REVELIO_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

/// A headless Chromium and one page of it, attached over the DevTools protocol.
struct Browser {
    child: Child,
    to: ChildStdin,
    from: Receiver<Value>,
    session: String,
    next_id: u64,
    profile: PathBuf,
}

impl Browser {
    fn launch(exe: &Path, profile: PathBuf) -> Browser {
        let flags = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1280,1400",
            "--remote-debugging-pipe",
        ];
        // fd 3 reads our stdin, fd 4 writes our stdout; the browser's own stdout is dropped.
        let script = format!("exec \"$0\" {} --user-data-dir=\"$1\" 3<&0 4>&1 </dev/null >/dev/null", flags.join(" "));
        let mut child = Command::new("sh")
            .args(["-c", &script])
            .arg(exe)
            .arg(&profile)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", exe.display()));
        let to = child.stdin.take().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, from) = channel();
        std::thread::spawn(move || {
            for msg in BufReader::new(out).split(0) {
                let Ok(bytes) = msg else { break };
                if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        let mut b = Browser { child, to, from, session: String::new(), next_id: 0, profile };
        let target = b.call("Target.createTarget", json!({"url": "about:blank"}), false);
        let attached = b.call("Target.attachToTarget", json!({"targetId": target["targetId"], "flatten": true}), false);
        b.session = attached["sessionId"].as_str().expect("a session id").to_string();
        b.call("Page.enable", json!({}), true);
        b
    }

    /// Sends a command (to the page's session when `page`) and returns its result.
    fn call(&mut self, method: &str, params: Value, page: bool) -> Value {
        self.next_id += 1;
        let mut msg = json!({"id": self.next_id, "method": method, "params": params});
        if page {
            msg["sessionId"] = json!(self.session);
        }
        self.to.write_all(&[serde_json::to_vec(&msg).unwrap(), vec![0]].concat()).unwrap();
        self.to.flush().unwrap();
        loop {
            let v = self.from.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("no reply to {method} from the browser"));
            if v["id"] == json!(self.next_id) {
                assert!(v.get("error").is_none(), "{method}: {}", v["error"]);
                return v["result"].clone();
            }
        }
    }

    /// Opens `url` and waits for its load event.
    fn open(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}), true);
        loop {
            let v = self.from.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("{url} did not load"));
            if v["method"] == "Page.loadEventFired" {
                return;
            }
        }
    }

    /// Evaluates `expr` in the page (a promise is awaited) and returns its value.
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call("Runtime.evaluate", json!({"expression": expr, "awaitPromise": true, "returnByValue": true}), true);
        assert!(r.get("exceptionDetails").is_none(), "{expr}\n{}", r["exceptionDetails"]);
        r["result"]["value"].clone()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Resolves once `cond` (a JS expression) holds, then gives `value`'s; null after 10 s.
fn when(cond: &str, value: &str) -> String {
    format!(
        "new Promise(done => {{ const t0 = Date.now(); (function poll() {{ if ({cond}) done({value}); \
         else if (Date.now() - t0 > 10000) done(null); else setTimeout(poll, 25); }})(); }})"
    )
}

/// Every image of the page once all have finished: (count, how many failed).
const IMAGES: &str = "[document.images.length, [...document.images].filter(i => !(i.naturalWidth > 0)).length]";
const IMAGES_DONE: &str = "document.images.length > 0 && [...document.images].every(i => i.complete)";

fn run(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_revelio")).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "revelio {}:\n{stderr}", args.join(" "));
    stderr
}

fn url(dir: &Path, page: &str) -> String {
    format!("file://{}/{page}", dir.canonicalize().unwrap().display())
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_explorer_works_in_a_browser() {
    let dir = std::env::temp_dir().join(format!("revelio-test-explorer-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let demo = dir.join("demo");
    run(&["demo", "--size", "tiny", "--device", "cpu", "--out", demo.to_str().unwrap()]);
    let report = demo.join("report");
    assert_eq!(std::fs::read_dir(report.join("data/latents")).unwrap().count(), 128, "a page per latent");
    let sae = demo.join("sae");
    let sae = sae.to_str().unwrap();

    // Bad input, as files: images moved away and a latent that does not exist; a split with no
    // images. Each report is written, and says what is wrong.
    std::fs::rename(demo.join("data"), dir.join("moved")).unwrap();
    let moved = demo.join("moved-report");
    let first = read(&report.join("latents.json"));
    let first: Value = serde_json::from_str(&first).unwrap();
    let moved_id = first[0]["id"].as_u64().unwrap();
    let stderr = run(&["sae", "analyze", "--sae", sae, "--latents", &format!("{moved_id},99999"), "--device", "cpu", "--out", moved.to_str().unwrap()]);
    assert!(stderr.contains("99999 is not a latent of this SAE") && stderr.contains("could not be read"), "{stderr}");
    assert!(read(&moved.join("data/meta.js")).contains("could not be read"));
    assert!(read(&moved.join(format!("data/latents/{moved_id:06}.js"))).contains("\"missing\":true"));
    assert_eq!(std::fs::read_dir(moved.join("data/latents")).unwrap().count(), 1, "--latents: one page");
    let empty = demo.join("empty-report");
    let stderr = run(&["sae", "analyze", "--sae", sae, "--split", "validation", "--device", "cpu", "--out", empty.to_str().unwrap()]);
    assert!(stderr.contains("split `validation` has no images") && stderr.contains("`train` 54"), "{stderr}");
    assert!(read(&empty.join("index.html")).contains("split `validation` has no images"));

    let Some(exe) = browser() else {
        assert!(std::env::var_os("REVELIO_REQUIRE_BROWSER").is_none(), "REVELIO_REQUIRE_BROWSER is set but no Chromium was found");
        eprintln!("SKIPPED: no Chromium found (set REVELIO_CHROMIUM, or install Debian's `chromium`); the explorer was checked as files, not in a browser");
        let _ = std::fs::remove_dir_all(&dir);
        return;
    };
    let mut b = Browser::launch(&exe, dir.join("profile"));

    // The index: every thumbnail and figure loads; 50 rows of the 128 latents.
    b.open(&url(&report, "index.html"));
    let images = b.eval(&when(IMAGES_DONE, IMAGES));
    assert!(images[0].as_u64().unwrap() >= 50 * 4 && images[1] == 0, "index images (count, failed): {images}");
    assert_eq!(b.eval("document.querySelectorAll('#latents tbody tr').length"), 50);
    assert_eq!(b.eval("document.querySelectorAll('figure svg').length"), 2);

    // Search by label: the label of the latent ranked 3rd finds it, and only latents with that
    // label; by id: exactly that latent.
    let target = b.eval("REVELIO_INDEX.rows[2]");
    let (id, label) = (target[0].as_u64().unwrap(), target[8].as_str().unwrap().to_string());
    let found = b.eval(&format!(
        "(() => {{ const s = document.getElementById('search'); s.value = {label:?}; s.dispatchEvent(new Event('input')); \
         const ids = [], labels = []; \
         for (;;) {{ for (const tr of document.querySelectorAll('#latents tbody tr')) {{ ids.push(Number(tr.cells[1].textContent)); labels.push(tr.cells[5].textContent); }} \
           const next = document.getElementById('next'); if (next.disabled) break; next.click(); }} \
         return [ids, labels, location.hash]; }})()"
    ));
    let ids: Vec<u64> = found[0].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert!(ids.contains(&id) && ids.len() < 128, "search {label:?}: {ids:?}");
    assert!(found[1].as_array().unwrap().iter().all(|l| l.as_str().unwrap().contains(&label)), "{found}");
    assert!(found[2].as_str().unwrap().starts_with("#q="), "the search is not in the URL: {found}");
    let by_id = b.eval(&format!(
        "(() => {{ const s = document.getElementById('search'); s.value = '{id}'; s.dispatchEvent(new Event('input')); \
         return [...document.querySelectorAll('#latents tbody tr')].map(tr => Number(tr.cells[1].textContent)); }})()"
    ));
    assert_eq!(by_id, json!([id]));

    // Sorting: a click on frequency orders the rows by it, descending, then ascending.
    let sorted = b.eval(
        "(() => { const s = document.getElementById('search'); s.value = ''; s.dispatchEvent(new Event('input')); \
         const col = () => [...document.querySelectorAll('#latents tbody tr')].map(tr => [Number(tr.cells[1].textContent), Number(tr.cells[2].textContent)]); \
         const before = col(); const th = document.querySelector('th[data-key=frequency]'); th.click(); const desc = col(); th.click(); \
         return [before, desc, col()]; })()",
    );
    let ids_of = |v: &Value| v.as_array().unwrap().iter().map(|p| p[0].as_u64().unwrap()).collect::<Vec<_>>();
    let freqs_of = |v: &Value| v.as_array().unwrap().iter().map(|p| p[1].as_f64().unwrap()).collect::<Vec<_>>();
    assert_ne!(ids_of(&sorted[0]), ids_of(&sorted[1]), "sorting by frequency did not reorder the rows");
    assert!(freqs_of(&sorted[1]).windows(2).all(|w| w[0] >= w[1]), "not descending: {}", sorted[1]);
    assert!(freqs_of(&sorted[2]).windows(2).all(|w| w[0] <= w[1]), "not ascending: {}", sorted[2]);

    // A latent's page: its top images with a heat map over each, drawn; its histogram, class
    // bars, nearest latents.
    b.open(&url(&report, &format!("latent.html#{id}")));
    let page = b.eval(&when(
        &format!("document.getElementById('tiles') && {IMAGES_DONE}"),
        &format!(
            "{{images: {IMAGES}, title: document.getElementById('title').textContent, \
             maps: document.querySelectorAll('#tiles canvas').length, tiles: document.querySelectorAll('#tiles .tile').length, \
             drawn: [...document.querySelectorAll('#tiles canvas')].filter(c => c.getContext('2d').getImageData(0, 0, c.width, c.height).data.some((v, i) => i % 4 == 3 && v > 0)).length, \
             bars: document.querySelectorAll('#histogram svg rect').length, classes: document.querySelectorAll('#classes tr').length, \
             neighbours: document.querySelectorAll('#neighbours tr').length}}"
        ),
    ));
    assert!(page["title"].as_str().unwrap().contains(&format!("Latent {id}")), "{page}");
    let tiles = page["tiles"].as_u64().unwrap();
    assert!(tiles >= 10 && page["images"][0] == tiles && page["images"][1] == 0, "{page}");
    assert_eq!(page["maps"], tiles, "a heat map per top image: {page}");
    assert!(page["drawn"].as_u64().unwrap() >= 1, "no heat map has a pixel drawn: {page}");
    assert!(page["bars"].as_u64().unwrap() >= 2 && page["classes"].as_u64().unwrap() >= 1, "{page}");
    assert_eq!(page["neighbours"], 10);

    // A latent that does not exist: the page says so.
    b.open(&url(&report, "latent.html?again#99999"));
    let status = b.eval(&when("document.getElementById('status')", "document.getElementById('status').textContent"));
    assert!(status.as_str().unwrap().contains("not a latent of this SAE"), "{status}");

    // The moved images' report: placeholders that load, a note that names the problem.
    b.open(&url(&moved, "index.html"));
    let index = b.eval(&when(IMAGES_DONE, &format!("[{IMAGES}, [...document.querySelectorAll('p.note')].map(p => p.textContent).join(' ')]")));
    assert!(index[0][1] == 0 && index[1].as_str().unwrap().contains("could not be read"), "{index}");
    b.open(&url(&moved, &format!("latent.html#{moved_id}")));
    let page = b.eval(&when(&format!("document.getElementById('tiles') && {IMAGES_DONE}"), &format!("[{IMAGES}, document.querySelectorAll('.tile.missing').length]")));
    assert!(page[0][1] == 0 && page[1].as_u64().unwrap() >= 10, "{page}");

    // The empty split's report opens and says why it is empty.
    b.open(&url(&empty, "index.html"));
    let note = b.eval(&when("document.querySelector('p.note')", "document.querySelector('p.note').textContent"));
    assert!(note.as_str().unwrap().contains("split `validation` has no images"), "{note}");
    drop(b);
    let _ = std::fs::remove_dir_all(&dir);
}
