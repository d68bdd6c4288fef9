//! Idle polling: while requests arrive fast, ask the kernel to keep idle
//! CPUs polling instead of halting (docs/FUSE.md "Idle polling").
//!
//! Every FUSE round trip wakes two sleeping threads: a daemon worker when
//! the request is queued, and the caller when the reply is written. When
//! the CPU that must run the woken thread is halted, waking it costs an
//! inter-processor interrupt and the CPU's exit from its idle state; in a
//! virtual machine the host must also schedule the virtual CPU again. On
//! the benchmark machine that made up most of a small request's time
//! (creates 2.2x faster and 4 KiB O_DIRECT reads 2x faster when idle CPUs
//! poll; docs/BENCHMARKS.md).
//!
//! The kernel's PM QoS interface lets a process ask for a bound on that
//! wake-up latency: while `/dev/cpu_dma_latency` is held open with 0
//! written to it, cpuidle picks only its polling state. The request ends
//! when the file is closed, also when the daemon dies. Polling costs power
//! and, in a virtual machine, host CPU time, so the daemon holds the
//! request only while it sees at least [`ENGAGE_RATE_PER_SECOND`] requests
//! a second, and gives it up within [`CHECK_EVERY`] once the rate falls
//! below half of that. Reads and writes of [`LARGE_REQUEST_BYTES`] or more
//! are not counted, so large sequential I/O never engages it: its round
//! trips are a small part of its time.
//!
//! Counting is one relaxed atomic add per request and, while not engaged,
//! a clock read per [`BATCH`] requests; the thread that holds the request
//! sleeps on a condition variable while the mount is quiet.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The kernel's CPU latency QoS device (Documentation/power/pm_qos_interface.rst).
pub const CPU_LATENCY_DEVICE: &str = "/dev/cpu_dma_latency";

/// Requests counted between two rate checks while not engaged.
pub const BATCH: u64 = 32;

/// Polling engages when requests arrive at least this fast: [`BATCH`]
/// requests within [`ENGAGE_WITHIN`].
pub const ENGAGE_RATE_PER_SECOND: u64 = 8_000;

/// The time [`BATCH`] requests may take and still engage polling.
pub const ENGAGE_WITHIN: Duration =
    Duration::from_nanos(BATCH * 1_000_000_000 / ENGAGE_RATE_PER_SECOND);

/// While engaged, the request rate is checked this often ...
pub const CHECK_EVERY: Duration = Duration::from_millis(10);

/// ... and polling stops when fewer requests than this arrived since the
/// last check (half the engage rate, so a rate near the threshold does
/// not flap).
pub const KEEP_AT_LEAST: u64 = ENGAGE_RATE_PER_SECOND / 2 * CHECK_EVERY.as_millis() as u64 / 1000;

/// Reads and writes of this many bytes or more are not counted: copying
/// the data takes several times as long as the wake-ups, so polling would
/// cost without gaining (1 MiB overwrites ran at about 6,500 requests a
/// second, held polling, and were no faster for it).
pub const LARGE_REQUEST_BYTES: usize = 256 << 10;

/// Counters of idle polling, for `cowdax counters`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IdlePollCounters {
    /// Times the PM QoS request was taken.
    pub engagements: u64,
    /// Milliseconds it was held, in total (including a period in progress).
    pub engaged_ms: u64,
}

struct Control {
    engage: bool,
    stop: bool,
}

struct Shared {
    /// False when the option is off or the device could not be used.
    enabled: AtomicBool,
    requests: AtomicU64,
    engaged: AtomicBool,
    epoch: Instant,
    /// Nanoseconds since `epoch` at the last batch boundary.
    batch_started_ns: AtomicU64,
    engagements: AtomicU64,
    /// Nanoseconds held in periods that ended.
    engaged_ns: AtomicU64,
    /// Nanoseconds since `epoch` when the current period began; 0 when none.
    engaged_since_ns: AtomicU64,
    control: Mutex<Control>,
    wake: Condvar,
}

impl Shared {
    fn control(&self) -> MutexGuard<'_, Control> {
        // The holder never panics while holding the lock; a poisoned lock
        // still guards two plain booleans.
        self.control
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Watches the request rate and holds the PM QoS request while it is high.
pub struct IdlePoll {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl IdlePoll {
    /// Idle polling that never engages (`idle_poll=off`).
    pub fn off() -> IdlePoll {
        IdlePoll {
            shared: Arc::new(Shared {
                enabled: AtomicBool::new(false),
                requests: AtomicU64::new(0),
                engaged: AtomicBool::new(false),
                epoch: Instant::now(),
                batch_started_ns: AtomicU64::new(0),
                engagements: AtomicU64::new(0),
                engaged_ns: AtomicU64::new(0),
                engaged_since_ns: AtomicU64::new(0),
                control: Mutex::new(Control {
                    engage: false,
                    stop: false,
                }),
                wake: Condvar::new(),
            }),
            thread: None,
        }
    }

    /// Starts the watcher; it holds `device` (normally
    /// [`CPU_LATENCY_DEVICE`]) open while engaged. `given`: the option was
    /// asked for explicitly, so failing to use the device is a warning.
    pub fn start(device: &Path, given: bool) -> IdlePoll {
        let mut poll = IdlePoll::off();
        poll.shared.enabled.store(true, Ordering::Relaxed);
        let shared = poll.shared.clone();
        let device = device.to_path_buf();
        match std::thread::Builder::new()
            .name("cowdax-idle-poll".to_string())
            .spawn(move || watch(&shared, &device, given))
        {
            Ok(thread) => poll.thread = Some(thread),
            Err(err) => {
                log::warn!("idle_poll: cannot start its thread: {err}; idle polling is off");
                poll.shared.enabled.store(false, Ordering::Relaxed);
            }
        }
        poll
    }

    /// Called once per FUSE request.
    #[inline]
    pub fn note_request(&self) {
        let shared = &*self.shared;
        let count = shared.requests.fetch_add(1, Ordering::Relaxed) + 1;
        if count % BATCH != 0
            || shared.engaged.load(Ordering::Relaxed)
            || !shared.enabled.load(Ordering::Relaxed)
        {
            return;
        }
        let now = shared.now_ns();
        let started = shared.batch_started_ns.swap(now, Ordering::Relaxed);
        // started == 0: the first batch, which has no start to measure from.
        if started != 0
            && now.saturating_sub(started) <= ENGAGE_WITHIN.as_nanos() as u64
            && !shared.engaged.swap(true, Ordering::AcqRel)
        {
            shared.control().engage = true;
            shared.wake.notify_one();
        }
    }

    /// Called once per READ or WRITE request of `bytes` bytes: counted
    /// like any request unless it is large ([`LARGE_REQUEST_BYTES`]).
    #[inline]
    pub fn note_transfer(&self, bytes: usize) {
        if bytes < LARGE_REQUEST_BYTES {
            self.note_request();
        }
    }

    /// Whether the PM QoS request is held right now.
    pub fn engaged(&self) -> bool {
        self.shared.engaged.load(Ordering::Acquire)
    }

    pub fn counters(&self) -> IdlePollCounters {
        let shared = &*self.shared;
        let since = shared.engaged_since_ns.load(Ordering::Relaxed);
        let current = if since == 0 {
            0
        } else {
            shared.now_ns().saturating_sub(since)
        };
        IdlePollCounters {
            engagements: shared.engagements.load(Ordering::Relaxed),
            engaged_ms: (shared.engaged_ns.load(Ordering::Relaxed) + current) / 1_000_000,
        }
    }
}

impl Drop for IdlePoll {
    fn drop(&mut self) {
        self.shared.control().stop = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Takes the PM QoS request: the device open, with a latency of 0 µs written.
fn take_request(device: &Path) -> std::io::Result<File> {
    let mut file = OpenOptions::new().write(true).open(device)?;
    file.write_all(&0i32.to_ne_bytes())?;
    Ok(file)
}

/// The watcher thread: sleeps until the request rate is high, then holds
/// the PM QoS request until it falls.
fn watch(shared: &Shared, device: &Path, given: bool) {
    // The daemon's termination signals belong to its signal thread; this
    // thread may start before the daemon blocks them (docs/FUSE.md,
    // "Users, threads, signals"), so it blocks every signal itself.
    if let Err(err) = nix::sys::signal::SigSet::all().thread_block() {
        log::warn!("idle_poll: cannot block signals in its thread: {err}");
    }
    loop {
        {
            let mut control = shared.control();
            while !control.engage && !control.stop {
                control = shared
                    .wake
                    .wait(control)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            if control.stop {
                return;
            }
            control.engage = false;
        }
        let request = match take_request(device) {
            Ok(file) => file,
            Err(err) => {
                let message = format!(
                    "idle_poll: cannot hold a CPU latency request on {}: {err}; \
                     idle polling is off (it needs root)",
                    device.display()
                );
                if given {
                    log::warn!("{message}");
                } else {
                    log::info!("{message}");
                }
                shared.enabled.store(false, Ordering::Relaxed);
                shared.engaged.store(false, Ordering::Release);
                return;
            }
        };
        shared.engagements.fetch_add(1, Ordering::Relaxed);
        let began = shared.now_ns().max(1);
        shared.engaged_since_ns.store(began, Ordering::Relaxed);
        log::debug!("idle polling engaged");
        let stopped = loop {
            let before = shared.requests.load(Ordering::Relaxed);
            let control = shared.control();
            let (control, _) = shared
                .wake
                .wait_timeout_while(control, CHECK_EVERY, |control| !control.stop)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if control.stop {
                break true;
            }
            drop(control);
            if shared.requests.load(Ordering::Relaxed) - before < KEEP_AT_LEAST {
                break false;
            }
        };
        drop(request);
        shared.engaged_since_ns.store(0, Ordering::Relaxed);
        let held = shared.now_ns().saturating_sub(began);
        shared.engaged_ns.fetch_add(held, Ordering::Relaxed);
        log::debug!("idle polling released after {} ms", held / 1_000_000);
        // A batch that straddled the engaged period must not count.
        shared
            .batch_started_ns
            .store(shared.now_ns(), Ordering::Relaxed);
        shared.engaged.store(false, Ordering::Release);
        if stopped {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn thresholds_are_consistent() {
        assert_eq!(ENGAGE_WITHIN, Duration::from_millis(4));
        assert_eq!(KEEP_AT_LEAST, 40);
    }

    /// Idle polling whose "device" is an empty temporary file.
    fn on_a_temp_device() -> (tempfile::TempDir, std::path::PathBuf, IdlePoll) {
        let dir = tempfile::tempdir().unwrap();
        let device = dir.path().join("qos");
        std::fs::write(&device, b"").unwrap();
        let poll = IdlePoll::start(&device, true);
        (dir, device, poll)
    }

    #[test]
    fn a_burst_engages_and_quiet_releases() {
        let (_dir, device, poll) = on_a_temp_device();
        // Slow requests (one batch per 10 ms) never engage.
        for _ in 0..5 {
            for _ in 0..BATCH {
                poll.note_request();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!poll.engaged());
        assert_eq!(poll.counters().engagements, 0);
        // A burst engages: the request is written to the device. (Each
        // batch boundary is a chance; many, so a preempted test still
        // sees two boundaries within ENGAGE_WITHIN.)
        for _ in 0..16 * BATCH {
            poll.note_request();
        }
        wait_for("engagement", || poll.counters().engagements == 1);
        assert_eq!(std::fs::read(&device).unwrap(), 0i32.to_ne_bytes());
        // Quiet: released within a check period or two.
        wait_for("release", || !poll.engaged());
        assert_eq!(poll.counters().engagements, 1);
        // A second burst engages again.
        for _ in 0..16 * BATCH {
            poll.note_request();
        }
        wait_for("second engagement", || poll.counters().engagements == 2);
        drop(poll);
    }

    #[test]
    fn large_transfers_do_not_count() {
        let (_dir, _device, poll) = on_a_temp_device();
        for _ in 0..64 * BATCH {
            poll.note_transfer(LARGE_REQUEST_BYTES);
        }
        assert_eq!(poll.shared.requests.load(Ordering::Relaxed), 0);
        for _ in 0..16 * BATCH {
            poll.note_transfer(LARGE_REQUEST_BYTES - 1);
        }
        wait_for("engagement", || poll.counters().engagements == 1);
    }

    #[test]
    fn an_unusable_device_turns_it_off_for_good() {
        let poll = IdlePoll::start(Path::new("/nonexistent/cpu_dma_latency"), false);
        for _ in 0..2 * BATCH {
            poll.note_request();
        }
        wait_for("giving up", || !poll.shared.enabled.load(Ordering::Relaxed));
        assert!(!poll.engaged());
        assert_eq!(poll.counters().engagements, 0);
    }

    #[test]
    fn off_never_engages() {
        let poll = IdlePoll::off();
        for _ in 0..10 * BATCH {
            poll.note_request();
        }
        assert!(!poll.engaged());
        assert_eq!(poll.counters(), IdlePollCounters::default());
    }
}
