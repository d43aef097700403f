//! The work and time one render may take. Jinja counts its own steps (fuel);
//! handlebars-rust has no such hook, so the handlebars renderer plants a
//! step helper at the start of every block body and every partial (see
//! `hbs::meter`), which charges the meter installed here for the render's
//! thread. Both engines' output sink checks the deadline on every write.
//!
//! A meter lives in a thread local for the duration of one synchronous
//! render: renders never move between threads, and a render started inside
//! another (none today) would keep its own budget.

use std::cell::RefCell;
use std::time::{Duration, Instant};

/// Which limit a render ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    /// More steps (loop iterations, block and partial entries, helper calls
    /// for handlebars; jinja's fuel) than this many.
    Steps(u64),
    /// Longer than this.
    Time(Duration),
    /// Nested deeper (partials including each other, blocks within blocks)
    /// than the thread's stack allows, with this many bytes of it left.
    Depth(usize),
}

impl Exceeded {
    /// The name the API reports: `steps` or `time`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Steps(_) => "steps",
            Self::Time(_) => "time",
            Self::Depth(_) => "depth",
        }
    }

    pub fn describe(self) -> String {
        match self {
            Self::Steps(steps) => format!(
                "the template took more than {steps} steps (loop iterations, blocks and \
                 partials); it loops or repeats too much"
            ),
            Self::Time(time) => format!(
                "the template took longer than {} ms to render",
                time.as_millis()
            ),
            Self::Depth(_) => "partials or blocks nest too deeply (a partial that includes \
                               itself, directly or through others, without end?)"
                .to_owned(),
        }
    }
}

struct Meter {
    steps: u64,
    left: u64,
    time: Duration,
    deadline: Instant,
    since_clock: u32,
    exceeded: Option<Exceeded>,
}

thread_local! {
    static METER: RefCell<Option<Meter>> = const { RefCell::new(None) };
}

/// How often (in steps) the clock is read.
const CLOCK_EVERY: u32 = 256;

/// The stack a render must leave unused: past it, nesting stops with
/// [`Exceeded::Depth`] instead of overflowing the thread's stack, which
/// would abort the process.
const STACK_RESERVE: usize = 256 * 1024;

/// Runs `render` with a budget of `steps` and `time` on this thread; answers
/// its result and the limit it ran into, if any.
pub fn metered<T>(steps: u64, time: Duration, render: impl FnOnce() -> T) -> (T, Option<Exceeded>) {
    let previous = METER.with(|m| {
        m.borrow_mut().replace(Meter {
            steps,
            left: steps,
            time,
            deadline: Instant::now() + time,
            since_clock: 0,
            exceeded: None,
        })
    });
    let result = render();
    let meter = METER.with(|m| std::mem::replace(&mut *m.borrow_mut(), previous));
    (result, meter.and_then(|m| m.exceeded))
}

/// Charges one step; `Err` once the steps or the time are used up (and on
/// every later call). Free when no meter is installed.
pub fn step() -> Result<(), Exceeded> {
    METER.with(|m| match m.borrow_mut().as_mut() {
        Some(meter) => meter.step(),
        None => Ok(()),
    })
}

/// `Err` once the time is used up. Free when no meter is installed.
pub fn check_time() -> Result<(), Exceeded> {
    METER.with(|m| match m.borrow_mut().as_mut() {
        Some(meter) => meter.check_time(),
        None => Ok(()),
    })
}

impl Meter {
    fn step(&mut self) -> Result<(), Exceeded> {
        if let Some(exceeded) = self.exceeded {
            return Err(exceeded);
        }
        if self.left == 0 {
            return Err(*self.exceeded.insert(Exceeded::Steps(self.steps)));
        }
        self.left -= 1;
        if let Some(left) = stacker::remaining_stack().filter(|left| *left < STACK_RESERVE) {
            return Err(*self.exceeded.insert(Exceeded::Depth(left)));
        }
        self.since_clock += 1;
        if self.since_clock >= CLOCK_EVERY {
            self.since_clock = 0;
            return self.check_time();
        }
        Ok(())
    }

    fn check_time(&mut self) -> Result<(), Exceeded> {
        if let Some(exceeded) = self.exceeded {
            return Err(exceeded);
        }
        if Instant::now() >= self.deadline {
            return Err(*self.exceeded.insert(Exceeded::Time(self.time)));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_run_out_and_stay_out() {
        let (_, exceeded) = metered(3, Duration::from_secs(60), || {
            assert!((0..3).all(|_| step().is_ok()));
            assert_eq!(step(), Err(Exceeded::Steps(3)));
            assert_eq!(check_time(), Err(Exceeded::Steps(3)));
        });
        assert_eq!(exceeded, Some(Exceeded::Steps(3)));
        // No meter outside a render.
        assert_eq!(step(), Ok(()));
    }

    #[test]
    fn time_runs_out() {
        let (_, exceeded) = metered(u64::MAX, Duration::ZERO, || {
            let _ = check_time();
        });
        assert_eq!(exceeded, Some(Exceeded::Time(Duration::ZERO)));
    }

    #[test]
    fn a_render_within_budget_reports_nothing() {
        let (value, exceeded) = metered(10, Duration::from_secs(60), || step().map(|()| 7));
        assert_eq!(value, Ok(7));
        assert_eq!(exceeded, None);
    }
}
