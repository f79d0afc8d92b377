//! The async runtime of switchyard's Raft: tokio, with an RNG that is seeded when a seed is
//! given and random otherwise.
//!
//! Production runs it like openraft's `TokioRuntime` (the RNG draws from the OS). The
//! simulation runs the same type inside [`Runtime::scope`]: every random draw (openraft's
//! election timeouts) then comes from a seed that is derived, along the tree of spawned
//! tasks, from the run's seed, so a seed gives the same run every time. A task spawned inside
//! a scope inherits a child seed; outside any scope nothing changes.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::time::Duration;

use openraft::OptionalSend;
use openraft::async_runtime::{Select2, Select3, Select4};
use openraft::{AsyncRuntime, TokioRuntime};
use rand::SeedableRng;
use rand::rngs::SmallRng;

tokio::task_local! {
    static SEED: Cell<u64>;
}

/// SplitMix64 with a chosen increment: the child's and the parent's next seeds come from
/// different sequences, so no two tasks of a run draw the same numbers.
fn mix(seed: u64, gamma: u64) -> u64 {
    let z = seed.wrapping_add(gamma);
    let z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The current task's seed, advanced; `None` outside a scope.
fn take_seed() -> Option<u64> {
    SEED.try_with(|c| {
        let s = c.get();
        c.set(mix(s, 0x6a09_e667_f3bc_c908));
        s
    })
    .ok()
}

/// tokio, with a seedable RNG. See the module documentation.
#[derive(Debug)]
pub struct Runtime {
    inner: TokioRuntime,
}

impl Runtime {
    /// Run `fut` with every random draw of Raft (in it and in every task it spawns) derived
    /// from `seed`.
    pub fn scope<F: Future>(
        seed: u64,
        fut: F,
    ) -> tokio::task::futures::TaskLocalFuture<Cell<u64>, F> {
        SEED.scope(Cell::new(seed), fut)
    }
}

type Tokio = TokioRuntime;

impl AsyncRuntime for Runtime {
    type JoinError = <Tokio as AsyncRuntime>::JoinError;
    type JoinHandle<T: OptionalSend + 'static> = <Tokio as AsyncRuntime>::JoinHandle<T>;
    type Sleep = <Tokio as AsyncRuntime>::Sleep;
    type Instant = <Tokio as AsyncRuntime>::Instant;
    type TimeoutError = <Tokio as AsyncRuntime>::TimeoutError;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = <Tokio as AsyncRuntime>::Timeout<R, T>;
    type ThreadLocalRng = SmallRng;

    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        match take_seed() {
            Some(seed) => {
                Tokio::spawn(SEED.scope(Cell::new(mix(seed, 0x9e37_79b9_7f4a_7c15)), future))
            }
            None => Tokio::spawn(future),
        }
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        Tokio::sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        Tokio::sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(
        duration: Duration,
        future: F,
    ) -> Self::Timeout<R, F> {
        Tokio::timeout(duration, future)
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(
        deadline: Self::Instant,
        future: F,
    ) -> Self::Timeout<R, F> {
        Tokio::timeout_at(deadline, future)
    }

    fn select2<A, B>(
        a: A,
        b: B,
    ) -> impl Future<Output = Select2<A::Output, B::Output>> + OptionalSend
    where
        A: Future + OptionalSend,
        B: Future + OptionalSend,
    {
        Tokio::select2(a, b)
    }

    fn select3<A, B, C>(
        a: A,
        b: B,
        c: C,
    ) -> impl Future<Output = Select3<A::Output, B::Output, C::Output>> + OptionalSend
    where
        A: Future + OptionalSend,
        B: Future + OptionalSend,
        C: Future + OptionalSend,
    {
        Tokio::select3(a, b, c)
    }

    fn select4<A, B, C, D>(
        a: A,
        b: B,
        c: C,
        d: D,
    ) -> impl Future<Output = Select4<A::Output, B::Output, C::Output, D::Output>> + OptionalSend
    where
        A: Future + OptionalSend,
        B: Future + OptionalSend,
        C: Future + OptionalSend,
        D: Future + OptionalSend,
    {
        Tokio::select4(a, b, c, d)
    }

    fn is_panic(join_error: &Self::JoinError) -> bool {
        Tokio::is_panic(join_error)
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        match take_seed() {
            Some(seed) => SmallRng::seed_from_u64(seed),
            None => SmallRng::seed_from_u64(rand::random()),
        }
    }

    type Mpsc = <Tokio as AsyncRuntime>::Mpsc;
    type Watch = <Tokio as AsyncRuntime>::Watch;
    type Oneshot = <Tokio as AsyncRuntime>::Oneshot;
    type Mutex<T: OptionalSend + 'static> = <Tokio as AsyncRuntime>::Mutex<T>;

    fn new(threads: usize) -> Self {
        Self {
            inner: Tokio::new(threads),
        }
    }

    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        self.inner.block_on(future)
    }

    fn spawn_blocking<F, T>(f: F) -> impl Future<Output = Result<T, io::Error>> + Send
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        Tokio::spawn_blocking(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngExt;

    #[tokio::test]
    async fn a_scope_gives_the_same_draws_and_no_scope_does_not_need_one() {
        let draws = || async {
            let a: u64 = Runtime::thread_rng().random();
            let child = Runtime::spawn(async { Runtime::thread_rng().random::<u64>() });
            let b: u64 = Runtime::thread_rng().random();
            (a, child.await.unwrap(), b)
        };
        let one = Runtime::scope(7, draws()).await;
        let two = Runtime::scope(7, draws()).await;
        assert_eq!(one, two);
        assert_ne!(one.0, one.1);
        assert_ne!(one.0, one.2);
        assert_ne!(one, Runtime::scope(8, draws()).await);
        // Outside a scope it still draws (from the OS).
        let _ = draws().await;
    }
}
