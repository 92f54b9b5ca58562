//! `--trace` (hidden, on `import` and `bake`): the time each step takes, one line per step on
//! stderr, so `make bench` can say where the live import spends its time. Off, a step costs
//! one atomic load.

use std::sync::Mutex;
use std::time::Instant;

/// When tracing started and when the last step ended; `None` while tracing is off.
static CLOCK: Mutex<Option<(Instant, Instant)>> = Mutex::new(None);

/// Starts the clock: steps print from now on.
pub fn enable() {
    let now = Instant::now();
    *CLOCK.lock().unwrap_or_else(|e| e.into_inner()) = Some((now, now));
}

/// Prints that `what` just ended: the time since [`enable`] and the time since the last step.
pub fn step(what: std::fmt::Arguments<'_>) {
    let mut clock = CLOCK.lock().unwrap_or_else(|e| e.into_inner());
    let Some((start, last)) = clock.as_mut() else {
        return;
    };
    let now = Instant::now();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    // One write per line: stderr is unbuffered.
    let line = format!(
        "pausebake: trace: {:8.2} ms (+{:7.2} ms) {what}\n",
        ms(now - *start),
        ms(now - *last)
    );
    eprint!("{line}");
    *last = now;
}
