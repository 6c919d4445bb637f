//! The profiler behind `revelio bench --profile`: while it is on, every op (src/ops opens an
//! `op` guard) and every module range (`trace::range`, named after the diffusers module tree)
//! is timed: the wall clock around the call on the CPU, whose backend is synchronous, and CUDA
//! events recorded on the device's stream on a GPU (read once the pass is over). On the CPU each
//! op is also charged the minor page faults and the system time the process took meanwhile
//! (first touches of fresh memory show there). Off, an op or a range costs one relaxed atomic
//! load. One pass at a time: the models call ops from one thread (rayon works inside an op).
//!
//! Nested ops (an op built from other ops) count once, under the outermost name. `report`
//! turns the records into per-op and per-module tables.

mod report;

pub use report::{ModuleRow, OpRow, Profile};

use crate::cuda::CudaEvent;
use crate::tensor::Device;
use crate::{Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

static ON: AtomicBool = AtomicBool::new(false);
static STATE: Mutex<Option<Recorder>> = Mutex::new(None);

/// A point in time: the host clock and the process's resource usage (CPU), or an event on the
/// device's stream (CUDA).
enum Mark {
    Cpu { at: Instant, faults: u64, sys_us: u64 },
    Cuda(CudaEvent),
}

impl Mark {
    fn now(device: &Device) -> Result<Mark> {
        match device {
            Device::Cpu => {
                let (faults, sys_us) = usage();
                Ok(Mark::Cpu { at: Instant::now(), faults, sys_us })
            }
            Device::Cuda(d) => Ok(Mark::Cuda(d.record_event()?)),
        }
    }
}

/// (minor page faults, system time in microseconds) of the whole process so far.
fn usage() -> (u64, u64) {
    // SAFETY: getrusage writes one `rusage` struct, which we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return (0, 0);
    }
    (ru.ru_minflt as u64, ru.ru_stime.tv_sec as u64 * 1_000_000 + ru.ru_stime.tv_usec as u64)
}

/// A finished interval: (elapsed ms, page faults, system ms), the last two 0 on a GPU.
fn interval(start: &Mark, end: &Mark) -> Result<(f64, u64, f64)> {
    match (start, end) {
        (Mark::Cpu { at: a, faults: fa, sys_us: sa }, Mark::Cpu { at: b, faults: fb, sys_us: sb }) => {
            Ok((b.duration_since(*a).as_secs_f64() * 1e3, fb.saturating_sub(*fa), sb.saturating_sub(*sa) as f64 * 1e-3))
        }
        (Mark::Cuda(a), Mark::Cuda(b)) => Ok((a.elapsed_ms(b)? as f64, 0, 0.0)),
        _ => Err(Error::Internal("profile: an interval started and ended on different devices".into())),
    }
}

/// One op call: its name, the innermost module open around it (an index into `modules`).
struct OpRecord {
    name: &'static str,
    module: Option<usize>,
    start: Mark,
    end: Mark,
}

/// One module range: its path, the range open around it, its start and (once closed) end.
struct ModuleRecord {
    path: String,
    parent: Option<usize>,
    start: Mark,
    end: Option<Mark>,
}

struct Recorder {
    device: Device,
    start: Mark,
    /// Open module ranges, innermost last (indices into `modules`).
    stack: Vec<usize>,
    /// How many op guards are open; only the outermost one records.
    op_depth: usize,
    /// The start of the outermost open op.
    op_start: Option<Mark>,
    ops: Vec<OpRecord>,
    modules: Vec<ModuleRecord>,
    /// The first failure to record a mark (reported by `stop`, never by the op).
    error: Option<Error>,
}

impl Recorder {
    fn mark(&mut self) -> Option<Mark> {
        match Mark::now(&self.device) {
            Ok(m) => Some(m),
            Err(e) => {
                self.error.get_or_insert(e);
                None
            }
        }
    }
}

fn with_recorder(f: impl FnOnce(&mut Recorder)) {
    if !ON.load(Ordering::Relaxed) {
        return;
    }
    let mut guard = STATE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(r) = guard.as_mut() {
        f(r);
    }
}

/// Starts recording one pass on `device` (any earlier records are dropped).
pub fn start(device: &Device) -> Result<()> {
    let start = Mark::now(device)?;
    let rec = Recorder {
        device: device.clone(),
        start,
        stack: Vec::new(),
        op_depth: 0,
        op_start: None,
        ops: Vec::new(),
        modules: Vec::new(),
        error: None,
    };
    *STATE.lock().unwrap_or_else(|p| p.into_inner()) = Some(rec);
    ON.store(true, Ordering::Relaxed);
    Ok(())
}

/// Stops recording, waits for the device, and returns the pass's profile: every op and module
/// with its time. Errors if nothing was started or a mark could not be recorded.
pub fn stop() -> Result<Profile> {
    ON.store(false, Ordering::Relaxed);
    let rec = STATE.lock().unwrap_or_else(|p| p.into_inner()).take();
    let mut rec = rec.ok_or_else(|| Error::Internal("profile::stop without profile::start".into()))?;
    let end = Mark::now(&rec.device)?;
    rec.device.synchronize()?;
    if let Some(e) = rec.error.take() {
        return Err(e);
    }
    let total = interval(&rec.start, &end)?;
    let ops = rec
        .ops
        .iter()
        .map(|o| Ok(report::OpSample { name: o.name, module: o.module, cost: interval(&o.start, &o.end)? }))
        .collect::<Result<Vec<_>>>()?;
    let modules = rec
        .modules
        .iter()
        .map(|m| {
            let ms = match &m.end {
                Some(end) => interval(&m.start, end)?.0,
                None => return Err(Error::Internal(format!("profile: range {} still open at stop", m.path))),
            };
            Ok(report::ModuleSample { path: m.path.clone(), parent: m.parent, ms })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Profile::from_samples(&rec.device.to_string(), total, &ops, &modules))
}

/// An open op; records it when dropped (if it is the outermost one).
#[must_use = "the op is timed until this guard drops"]
pub struct OpGuard {
    name: Option<&'static str>,
}

/// Times the op `name` until the guard drops. Ops call it first thing.
pub fn op(name: &'static str) -> OpGuard {
    let mut recorded = None;
    with_recorder(|r| {
        r.op_depth += 1;
        if r.op_depth == 1 {
            r.op_start = r.mark();
            recorded = Some(name);
        }
    });
    OpGuard { name: recorded }
}

impl Drop for OpGuard {
    fn drop(&mut self) {
        let Some(name) = self.name else {
            with_recorder(|r| r.op_depth = r.op_depth.saturating_sub(1));
            return;
        };
        with_recorder(|r| {
            r.op_depth = r.op_depth.saturating_sub(1);
            let (Some(start), Some(end)) = (r.op_start.take(), r.mark()) else { return };
            let module = r.stack.last().copied();
            r.ops.push(OpRecord { name, module, start, end });
        });
    }
}

/// An open module range; closes it when dropped.
pub struct ModuleGuard {
    index: Option<usize>,
}

/// Opens the module range `path` (called by `trace::range`).
pub fn module(path: &str) -> ModuleGuard {
    let mut index = None;
    with_recorder(|r| {
        let Some(start) = r.mark() else { return };
        let i = r.modules.len();
        r.modules.push(ModuleRecord { path: path.to_string(), parent: r.stack.last().copied(), start, end: None });
        r.stack.push(i);
        index = Some(i);
    });
    ModuleGuard { index }
}

impl Drop for ModuleGuard {
    fn drop(&mut self) {
        let Some(i) = self.index else { return };
        with_recorder(|r| {
            let end = r.mark();
            if let Some(pos) = r.stack.iter().rposition(|&s| s == i) {
                r.stack.truncate(pos);
            }
            r.modules[i].end = end;
        });
    }
}

/// Runs `f` `passes` times (at least once), each pass recorded on its own, and returns the
/// median profile: what `revelio bench --profile` prints.
pub fn passes<T>(device: &Device, passes: usize, mut f: impl FnMut() -> Result<T>) -> Result<Profile> {
    let mut all = Vec::with_capacity(passes.max(1));
    for _ in 0..passes.max(1) {
        start(device)?;
        let out = f();
        let p = stop();
        drop(out?);
        all.push(p?);
    }
    Profile::median(&all).ok_or_else(|| Error::Internal("profile: no pass recorded".into()))
}
