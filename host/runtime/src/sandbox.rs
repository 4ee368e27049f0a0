//! The sandbox: one wasmtime `Engine` per process, components checked and
//! precompiled once, and a fresh instance for every event under the app's
//! limits (memory via the limiter, running time via epoch interruption driven
//! by one process-wide ticker, view size via validation), scheduled fairly
//! onto a bounded number of run slots (see [`crate::scheduler`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, ComponentExportIndex, Func, Instance, Linker, TypedFunc};
use wasmtime::{
    CallHook, Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
    Trap, UpdateDeadline,
};

use superapp_core::{Capability, Limits, Manifest, PACKAGE, VERSION};
use superapp_store::waits;

use crate::bindings::superapp::plugin::types::{AppError, Context, Event, View as WitView};
use crate::bindings::MiniProgramPre;
use crate::cache::{sha256_hex, ComponentCache, Origin};
use crate::capabilities::{self, HostState, Services};
use crate::compile::{CompileQueue, CompileWorker, Uncompiled, Urgency};
use crate::contract::{check_imports, ImportReport};
use crate::error::{Limit, LoadError, RunError};
use crate::limits::{self, Breach, Meter};
use crate::metrics::{Prepared, RuntimeMetrics};
use crate::scheduler::{Scheduler, SchedulerConfig};
use crate::view::{self, ViewError};

/// How long past its time limit an event may run when it is blocked in a
/// host call rather than running wasm (where the epoch check stops it).
const BACKSTOP: Duration = Duration::from_millis(50);

/// The most of its waits on the store (`superapp_store::waits`: database
/// round trips, group commits) one host call counts against the app's time
/// limit; the rest is the host's delay (a loaded database), not the app's
/// fault. A round trip takes well under this on a healthy store, so an app
/// that loops on host calls pays for each; and work a call does for the
/// app (copying a large value, hashing) always counts in full, as do the
/// waits of `http`, on the app's own backend.
pub const HOST_CALL_CHARGE: Duration = Duration::from_millis(2);

/// The host's delays excused in one event are at most this many times its
/// time limit (and at most [`RuntimeConfig::host_delay`]): a round trip
/// also holds work the app asked of the database (a large value, a long
/// list, a contended key), so an app can stretch its own waits, but no
/// further than this.
pub const HOST_DELAY_PER_LIMIT: u32 = 4;

fn budget_of(limits: &Limits) -> Duration {
    Duration::from_millis(limits.time_ms)
}

/// Host policy for the sandbox.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Use the pooling instance allocator (fast instantiation, memory
    /// reserved up front). Off: allocate on demand.
    pub pooling: bool,
    /// The host's caps; every app's limits are capped by these.
    pub cap: Limits,
    /// Period of the epoch ticker; time limits are enforced to about one tick.
    pub epoch_tick: Duration,
    /// Where precompiled components are kept; `None` compiles every load.
    pub cache_dir: Option<PathBuf>,
    /// Pooling only: up to this many bytes of each linear memory are reset
    /// in place (only the dirtied pages, where the kernel supports
    /// PAGEMAP_SCAN) rather than returned to the OS when an instance ends,
    /// so the next instance in that slot takes no page faults.
    pub keep_resident: usize,
    /// How many events run at once, how many are alive at once (the
    /// pool's size: `scheduler.instances`), and how many may wait.
    pub scheduler: SchedulerConfig,
    /// Compile in a child process under a budget (what a host does);
    /// `None` compiles in this process, unbounded (tests, benches).
    pub compile_worker: Option<CompileWorker>,
    /// How long the host's own delays may keep one event waiting. A host
    /// call's waits on the store count against the app's time limit up to
    /// [`HOST_CALL_CHARGE`]; beyond that (a loaded database, a slow disk)
    /// they are the host's, off the app's clock, until they add up to
    /// this or [`HOST_DELAY_PER_LIMIT`] times the app's limit, when the
    /// event ends as [`RunError::HostDelayed`].
    pub host_delay: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            pooling: true,
            cap: Limits {
                memory_bytes: 64 << 20,
                time_ms: 10_000,
                view_nodes: 2_000,
                view_bytes: 1 << 20,
                storage_bytes: 10 << 20,
            },
            epoch_tick: Duration::from_millis(1),
            cache_dir: None,
            keep_resident: 1 << 20,
            scheduler: SchedulerConfig::default(),
            compile_worker: None,
            host_delay: Duration::from_secs(10),
        }
    }
}

/// Advances the engine's epoch at a fixed period while events run, for the
/// whole process. With no event running it sleeps until one starts: an idle
/// host is not woken a thousand times a second, and its epoch stands still
/// only while no store could see it.
struct Ticker {
    shared: Arc<TickerShared>,
    handle: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct TickerShared {
    /// Events running now (each holds a [`Ticking`]).
    running: AtomicUsize,
    /// Whether the ticker is asleep, or about to be (set before it looks
    /// at `running` a last time): only then does a starting event pay for
    /// waking it.
    parked: AtomicBool,
    /// Ticks made so far.
    ticks: AtomicU64,
    stop: AtomicBool,
    /// Held by the ticker from its last look at `running` until it waits,
    /// and by whoever wakes it: a wake-up cannot fall in between.
    idle: std::sync::Mutex<()>,
    wake: std::sync::Condvar,
}

impl TickerShared {
    fn idle(&self) -> std::sync::MutexGuard<'_, ()> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake(&self) {
        let _idle = self.idle();
        self.wake.notify_one();
    }

    /// Sleep while no event runs. `parked` is written before `running` is
    /// read here, and `running` before `parked` is read by a starting event
    /// (all sequentially consistent): one of the two sees the other's
    /// write, so either this does not wait or the event wakes it.
    fn sleep_while_idle(&self) {
        let mut idle = self.idle();
        self.parked.store(true, Ordering::SeqCst);
        while self.running.load(Ordering::SeqCst) == 0 && !self.stop.load(Ordering::SeqCst) {
            idle = self.wake.wait(idle).unwrap_or_else(|p| p.into_inner());
        }
        self.parked.store(false, Ordering::SeqCst);
    }
}

/// Keeps the ticker ticking while an event runs.
struct Ticking(Arc<TickerShared>);

impl Drop for Ticking {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Ticker {
    fn start(engine: Engine, tick: Duration) -> std::io::Result<Ticker> {
        let shared = Arc::new(TickerShared::default());
        let ticker = shared.clone();
        let handle = std::thread::Builder::new()
            .name("superapp-epoch".into())
            .spawn(move || {
                while !ticker.stop.load(Ordering::SeqCst) {
                    if ticker.running.load(Ordering::SeqCst) == 0 {
                        ticker.sleep_while_idle();
                        continue;
                    }
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                    ticker.ticks.fetch_add(1, Ordering::Relaxed);
                }
            })?;
        Ok(Ticker {
            shared,
            handle: Some(handle),
        })
    }

    /// Tick until the returned guard drops (an event runs meanwhile).
    fn running(&self) -> Ticking {
        // Events back to back find it awake (between two of its ticks) and
        // make no system call here.
        if self.shared.running.fetch_add(1, Ordering::SeqCst) == 0
            && self.shared.parked.load(Ordering::SeqCst)
        {
            self.shared.wake();
        }
        Ticking(self.shared.clone())
    }

    fn ticks(&self) -> u64 {
        self.shared.ticks.load(Ordering::Relaxed)
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// What `launch` and `event` return.
type Answer = (Result<WitView, AppError>,);

/// The component's two exports, found once at load. Their types are
/// checked against the contract in the first instance (every instance of
/// one component has the same types); later instances skip that check.
struct Exports {
    launch: ComponentExportIndex,
    event: ComponentExportIndex,
    checked: AtomicBool,
}

impl Exports {
    fn find(component: &Component) -> Result<Exports, LoadError> {
        let index = |name: &str| {
            component
                .get_export_index(None, name)
                .ok_or_else(|| LoadError::Link(format!("the component exports no `{name}`")))
        };
        Ok(Exports {
            launch: index(crate::contract::WORLD_EXPORTS[0])?,
            event: index(crate::contract::WORLD_EXPORTS[1])?,
            checked: AtomicBool::new(false),
        })
    }

    /// The export at `index`, after both exports' types were checked once.
    fn checked_func(
        &self,
        store: &mut Store<HostState>,
        instance: &Instance,
        index: &ComponentExportIndex,
    ) -> wasmtime::Result<Func> {
        if !self.checked.load(Ordering::Acquire) {
            instance.get_typed_func::<(&Context,), Answer>(&mut *store, &self.launch)?;
            instance.get_typed_func::<(&Context, &Event), Answer>(&mut *store, &self.event)?;
            self.checked.store(true, Ordering::Release);
        }
        instance
            .get_func(&mut *store, index)
            .ok_or_else(|| wasmtime::Error::msg("an export of the component is not a function"))
    }

    fn launch<'a>(
        &self,
        store: &mut Store<HostState>,
        instance: &Instance,
    ) -> wasmtime::Result<TypedFunc<(&'a Context,), Answer>> {
        let func = self.checked_func(store, instance, &self.launch)?;
        // SAFETY: `checked_func` returns only after `launch` of this very
        // component passed `get_typed_func` with exactly these types.
        #[allow(unsafe_code)]
        Ok(unsafe { TypedFunc::new_unchecked(func) })
    }

    fn event<'a>(
        &self,
        store: &mut Store<HostState>,
        instance: &Instance,
    ) -> wasmtime::Result<TypedFunc<(&'a Context, &'a Event), Answer>> {
        let func = self.checked_func(store, instance, &self.event)?;
        // SAFETY: as in `launch`, for `event`'s types.
        #[allow(unsafe_code)]
        Ok(unsafe { TypedFunc::new_unchecked(func) })
    }
}

/// A checked, linked mini-program, ready to instantiate.
pub struct App {
    manifest: Arc<Manifest>,
    pre: MiniProgramPre<HostState>,
    exports: Exports,
    limits: Limits,
    sha256: String,
    imports: ImportReport,
    origin: Origin,
    /// The manifest's version as the app sees it in its context, formatted
    /// once at load rather than per event.
    version: String,
    /// This app's series of successful events in the runtime's metrics.
    ok_events: prometheus_client::metrics::counter::Counter,
}

impl App {
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    /// The app's limits after the host's caps.
    pub fn limits(&self) -> Limits {
        self.limits
    }
    /// Hex SHA-256 of the component bytes.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }
    pub fn imports(&self) -> &ImportReport {
        &self.imports
    }
    /// Whether this load compiled the component or found it precompiled.
    pub fn origin(&self) -> Origin {
        self.origin
    }
}

/// Where a component's SHA-256 came from.
#[derive(Clone, Copy)]
enum Digest {
    /// Computed from its bytes just now.
    Computed,
    /// Given by the caller: checked before anything is compiled.
    Claimed,
}

/// Who an event runs for.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The host's user id; the app only ever sees its pseudonym.
    pub user: String,
    pub locale: String,
    pub params: Vec<(String, String)>,
    /// Whether the app may put something new before the user in this event
    /// (a payment sheet, a document request, a card to share): while the
    /// user uses it, not in an event the host sends on its own (an expiry)
    /// or to tell it of a refusal, so no app can ask again and again by
    /// itself.
    pub may_ask: bool,
}

impl Invocation {
    pub fn new(user: impl Into<String>) -> Self {
        Invocation {
            user: user.into(),
            locale: "en".into(),
            params: Vec::new(),
            may_ask: true,
        }
    }
}

/// Which export to call.
#[derive(Debug, Clone)]
pub enum Call {
    Launch,
    Event(Event),
}

/// Compile failures a runtime remembers at most.
const MAX_REMEMBERED_FAILURES: usize = 1024;

pub struct Runtime {
    /// Runs components: it holds the instance pool and cannot compile, so
    /// a host that finds its apps precompiled never sets a compiler up.
    engine: Engine,
    /// Compiles for `engine` (the same settings), made at the first
    /// component that is not precompiled.
    compiler: std::sync::OnceLock<Engine>,
    /// One compile at a time, launches first.
    compiling: CompileQueue,
    /// Components (by SHA-256) that did not compile, and why: not tried
    /// again in this process, so a component past the compile budget takes
    /// it once, not at every launch.
    failed: std::sync::Mutex<std::collections::HashMap<String, String>>,
    config: RuntimeConfig,
    cache: Option<ComponentCache>,
    scheduler: Scheduler,
    metrics: Arc<RuntimeMetrics>,
    ticker: Ticker,
}

impl Runtime {
    pub fn new(mut config: RuntimeConfig) -> anyhow::Result<Runtime> {
        let engine = match Runtime::engine_for(&config) {
            Ok(engine) => engine,
            // The pool reserves address space for every slot up front (a
            // 4 GiB reservation and guard per linear memory): where that is
            // not allowed (a capped address space, few memory mappings),
            // run with instances allocated on demand rather than not at all.
            Err(e) if config.pooling => {
                tracing::warn!(
                    error = %format!("{e:#}"),
                    slots = config.scheduler.instances,
                    "cannot reserve the instance pool; allocating instances on demand (events are slower)"
                );
                config.pooling = false;
                Runtime::engine_for(&config)?
            }
            Err(e) => return Err(e),
        };
        let cache = match &config.cache_dir {
            Some(dir) => Some(ComponentCache::new(dir)?),
            None => None,
        };
        let ticker = Ticker::start(engine.clone(), config.epoch_tick)?;
        Ok(Runtime {
            engine,
            compiler: std::sync::OnceLock::new(),
            compiling: CompileQueue::default(),
            failed: std::sync::Mutex::new(std::collections::HashMap::new()),
            scheduler: Scheduler::new(config.scheduler),
            metrics: Arc::new(RuntimeMetrics::default()),
            config,
            cache,
            ticker,
        })
    }

    /// Epoch ticks made so far. They advance only while an event runs:
    /// an idle runtime's ticker sleeps.
    pub fn epoch_ticks(&self) -> u64 {
        self.ticker.ticks()
    }

    /// The settings every engine of the host shares: what its compiled
    /// code depends on.
    pub(crate) fn wasm_config() -> Config {
        let mut wasm = Config::new();
        wasm.epoch_interruption(true);
        wasm.max_wasm_stack(512 << 10);
        wasm
    }

    /// The engine that runs what `config` asks for: the shared settings,
    /// no compiler, and the instance allocator.
    fn engine_for(config: &RuntimeConfig) -> anyhow::Result<Engine> {
        let mut wasm = Runtime::wasm_config();
        wasm.enable_compiler(false);
        if config.pooling {
            // The scheduler lets no more events be alive at once, and each
            // may use as much as a component is allowed: so no event fails
            // to instantiate because others took the pool's memories or
            // tables (they only reserve address space until used).
            let n = u32::try_from(config.scheduler.instances.max(1)).unwrap_or(u32::MAX);
            let each = |max: usize| n.saturating_mul(max as u32);
            let mut pool = PoolingAllocationConfig::default();
            pool.total_component_instances(n)
                .total_core_instances(each(limits::MAX_INSTANCES))
                .total_memories(each(limits::MAX_MEMORIES))
                .total_tables(each(limits::MAX_TABLES))
                .total_stacks(n)
                .max_core_instances_per_component(limits::MAX_INSTANCES as u32)
                .max_memories_per_component(limits::MAX_MEMORIES as u32)
                .max_tables_per_component(limits::MAX_TABLES as u32)
                .table_elements(limits::MAX_TABLE_ELEMENTS)
                .max_memory_size(config.cap.memory_bytes as usize)
                // Where the kernel can say which pages an instance dirtied
                // (PAGEMAP_SCAN, Linux 6.7+), reset only those, in place.
                .pagemap_scan(Enabled::Auto)
                .linear_memory_keep_resident(config.keep_resident)
                .table_keep_resident(config.keep_resident);
            wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        Engine::new(&wasm).map_err(anyhow::Error::from)
    }

    /// Compile `bytes` for the running engine: with the compiler engine
    /// (made now if this is the first), then moved over in wasmtime's
    /// serialized form, which is also what the cache keeps.
    fn compile_new(&self, bytes: &[u8]) -> Result<(Component, Vec<u8>), Uncompiled> {
        let serialized = match &self.config.compile_worker {
            Some(worker) => worker.compile(bytes)?,
            None => {
                let compiler = match self.compiler.get() {
                    Some(engine) => engine,
                    None => {
                        let engine = Engine::new(&Runtime::wasm_config())
                            .map_err(|e| Uncompiled::passing(format!("{e:#}")))?;
                        // Two first compiles at once: one engine is kept.
                        self.compiler.get_or_init(|| engine)
                    }
                };
                Component::new(compiler, bytes)
                    .and_then(|c| c.serialize())
                    .map_err(|e| Uncompiled::lasting(format!("{e:#}")))?
            }
        };
        // SAFETY: `Component::deserialize` trusts its input to be wasmtime's
        // own output for a compatible engine: these bytes are what
        // `serialize` just returned, here or in the compile worker (this
        // same binary, reached through a pipe only the two processes hold),
        // compiled with the settings the running engine shares (and
        // wasmtime checks the two engines agree).
        #[allow(unsafe_code)]
        let component = unsafe { Component::deserialize(&self.engine, &serialized) }
            .map_err(|e| Uncompiled::passing(format!("{e:#}")))?;
        Ok((component, serialized))
    }

    /// Remove from the precompile cache what this build cannot load
    /// (see [`ComponentCache::sweep`]); how many files went.
    pub fn sweep_cache(&self) -> usize {
        self.cache.as_ref().map_or(0, |c| c.sweep(&self.engine))
    }

    /// Whether instances come from the pooling allocator (false when the
    /// host fell back to allocating them on demand).
    pub fn pooling(&self) -> bool {
        self.config.pooling
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    pub fn scheduler(&self) -> &Scheduler {
        &self.scheduler
    }

    /// Events, limit breaches, capability-call latency, the queue.
    pub fn metrics(&self) -> &Arc<RuntimeMetrics> {
        &self.metrics
    }

    /// Compile (or load precompiled) without any checks: for tools that
    /// inspect components.
    pub fn compile(&self, bytes: &[u8]) -> Result<(Component, Origin), LoadError> {
        self.compile_digested(
            &sha256_hex(bytes),
            Digest::Computed,
            bytes,
            Urgency::Publish,
        )
    }

    /// [`Runtime::compile`] of bytes whose SHA-256 (hex) is `sha`: known
    /// (computed from them), or claimed and checked before anything is
    /// compiled from them.
    fn compile_digested(
        &self,
        sha: &str,
        digest: Digest,
        bytes: &[u8],
        urgency: Urgency,
    ) -> Result<(Component, Origin), LoadError> {
        let check = || match digest {
            Digest::Computed => Ok(()),
            Digest::Claimed => {
                let actual = sha256_hex(bytes);
                if actual == sha {
                    Ok(())
                } else {
                    Err(LoadError::Digest {
                        claimed: sha.to_string(),
                        actual,
                    })
                }
            }
        };
        let cached = || {
            let component = self.cache.as_ref()?.load(&self.engine, sha)?;
            self.metrics.prepared(Prepared::Cached, None);
            Some((component, Origin::Cache))
        };
        if let Some(found) = cached() {
            return Ok(found);
        }
        check()?;
        // One compile at a time, launches first: each may take its whole
        // budget of memory, and two loads of one component compile it once.
        let _turn = self.compiling.enter(urgency);
        if let Some(found) = cached() {
            return Ok(found);
        }
        let failed = || self.failed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(why) = failed().get(sha) {
            self.metrics.prepared(Prepared::Remembered, None);
            return Err(LoadError::Compile(why.clone()));
        }
        let started = Instant::now();
        let compiled = self.compile_new(bytes);
        let took = Some(started.elapsed());
        let (component, serialized) = compiled.map_err(|e| {
            if e.lasting {
                self.metrics.prepared(Prepared::Refused, took);
                let mut failed = failed();
                // Bounded: a host that sees this many failures forgets them.
                if failed.len() >= MAX_REMEMBERED_FAILURES {
                    failed.clear();
                }
                failed.insert(sha.to_string(), e.why.clone());
            } else {
                self.metrics.prepared(Prepared::Failed, took);
            }
            LoadError::Compile(e.why)
        })?;
        self.metrics.prepared(Prepared::Compiled, took);
        if let Some(cache) = &self.cache {
            cache.store(&self.engine, sha, &serialized);
        }
        Ok((component, Origin::Compiled))
    }

    /// Check a component against its manifest and prepare it to run.
    pub fn load(&self, manifest: Manifest, bytes: &[u8]) -> Result<App, LoadError> {
        self.load_with(
            manifest,
            bytes,
            sha256_hex(bytes),
            Digest::Computed,
            Urgency::Launch,
        )
    }

    /// [`Runtime::load`] of a component whose SHA-256 (hex) the caller
    /// already has, as a verified package's signature names it: found
    /// precompiled, the bytes are not hashed again; otherwise they are
    /// checked against it before they are compiled, so a wrong digest
    /// never files another component's code under it.
    pub fn load_digested(
        &self,
        manifest: Manifest,
        bytes: &[u8],
        sha256: &str,
    ) -> Result<App, LoadError> {
        self.load_digested_as(manifest, bytes, sha256, Urgency::Launch)
    }

    /// [`Runtime::load_digested`] for whoever waits as `urgency` says: a
    /// compile for a launch goes before queued compiles for publishes.
    pub fn load_digested_as(
        &self,
        manifest: Manifest,
        bytes: &[u8],
        sha256: &str,
        urgency: Urgency,
    ) -> Result<App, LoadError> {
        let sha256 = sha256.to_ascii_lowercase();
        // It names files in the cache: nothing but a digest's 64 hex digits.
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(LoadError::Digest {
                claimed: sha256,
                actual: sha256_hex(bytes),
            });
        }
        self.load_with(manifest, bytes, sha256, Digest::Claimed, urgency)
    }

    fn load_with(
        &self,
        manifest: Manifest,
        bytes: &[u8],
        sha256: String,
        digest: Digest,
        urgency: Urgency,
    ) -> Result<App, LoadError> {
        let (component, origin) = self.compile_digested(&sha256, digest, bytes, urgency)?;
        let imports =
            check_imports(&self.engine, &component, &manifest).map_err(LoadError::Imports)?;

        // The linker holds only what the manifest declares: even if the
        // static check were wrong, an undeclared import would fail to link.
        let mut linker: Linker<HostState> = Linker::new(&self.engine);
        linker
            .instance(&format!("{PACKAGE}/types@{VERSION}"))
            .map_err(|e| LoadError::Link(e.to_string()))?;
        for capability in manifest.capabilities() {
            capabilities::link(capability, &mut linker)
                .map_err(|e| LoadError::Link(e.to_string()))?;
        }
        let pre = linker
            .instantiate_pre(&component)
            .and_then(MiniProgramPre::new)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let limits = manifest.limits.capped_by(self.config.cap);
        let ok_events = self.metrics.ok_events(&manifest.id);
        Ok(App {
            version: manifest.version.to_string(),
            manifest: Arc::new(manifest),
            exports: Exports::find(&component)?,
            pre,
            limits,
            sha256,
            imports,
            origin,
            ok_events,
        })
    }

    /// Read a manifest and a component from disk and load them.
    pub fn load_files(&self, manifest: &Path, component: &Path) -> Result<App, LoadError> {
        // The component first: a missing one is named as such, whatever
        // the manifest's state.
        let limit = superapp_core::package::MAX_PACKAGE_BYTES as u64;
        let bytes = superapp_core::files::read_at_most(component, limit).map_err(|source| {
            LoadError::Io {
                path: component.display().to_string(),
                source,
            }
        })?;
        if let Some(problem) = superapp_core::package::component_preamble_problem(&bytes) {
            return Err(LoadError::Compile(format!(
                "{} {problem}",
                component.display()
            )));
        }
        let manifest = Manifest::load(manifest)?;
        self.load(manifest, &bytes)
    }

    /// Run one export in a fresh instance and return the validated view.
    ///
    /// The event first waits for a run slot; a user's launch or action is
    /// refused as [`RunError::Overloaded`] when the host is at capacity,
    /// a host event waits as long as it takes. The time limit counts only
    /// the time the event holds a slot, less the host's own delays in host
    /// calls (see [`RuntimeConfig::host_delay`]).
    pub async fn run(
        &self,
        app: &App,
        services: &Arc<Services>,
        invocation: &Invocation,
        call: &Call,
    ) -> Result<view::View, RunError> {
        let mut running = Duration::ZERO;
        let result = self
            .execute(app, services, invocation, call, &mut running)
            .await;
        self.metrics.event(
            &app.manifest.id,
            &app.ok_events,
            &result.as_ref().map(|_| ()),
            running,
        );
        result
    }

    async fn execute(
        &self,
        app: &App,
        services: &Arc<Services>,
        invocation: &Invocation,
        call: &Call,
        running_time: &mut Duration,
    ) -> Result<view::View, RunError> {
        // Named in errors only: formatted when one happens.
        let label = || app.manifest.label();
        let limits = app.limits;
        let patient = matches!(call, Call::Event(e) if !matches!(e, Event::Action(_)));
        let asked = Instant::now();
        let turn = self
            .scheduler
            .start(&app.manifest.id, patient)
            .await
            .map_err(|reason| RunError::Overloaded {
                app: label(),
                reason,
            })?;
        self.metrics.waited(asked.elapsed());
        let mut state = HostState::new(
            app.manifest.clone(),
            invocation.user.clone(),
            services.clone(),
            Meter::new(limits.memory_bytes),
        );
        state.may_ask = invocation.may_ask;
        // The epoch moves while this event's store lives.
        let _ticking = self.ticker.running();
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.meter);
        if app.manifest.declares(Capability::Http) {
            // A host call that waits (on the network) gets what is left of
            // the limit but a reserve, a tenth of it up to 100 ms, so the
            // app still has time to answer with the error.
            let budget = Duration::from_millis(limits.time_ms);
            let reserve = (budget / 10).min(Duration::from_millis(100));
            store.data_mut().deadline = Some((turn.clone(), budget - reserve));
        }
        let metrics = self.metrics.clone();
        let mut entered = None;
        let mut delayed = Duration::ZERO;
        let host_delay = self
            .config
            .host_delay
            .min(budget_of(&limits) * HOST_DELAY_PER_LIMIT);
        // The turn also keeps when the host call under way began, for the
        // backstop. Host calls nest: handing a call's result to the app
        // calls the app's allocator, which may call into the host again
        // (growing its memory); only the outermost call is accounted.
        let excusing = turn.clone();
        let mut depth = 0u32;
        store.call_hook(move |mut ctx, hook| {
            match hook {
                CallHook::CallingHost => {
                    depth += 1;
                    if depth == 1 {
                        let now = Instant::now();
                        entered = Some((now, waits::waited()));
                        excusing.in_host(Some(now));
                    }
                }
                CallHook::ReturningFromHost => {
                    depth = depth.saturating_sub(1);
                    if depth > 0 {
                        return Ok(());
                    }
                    excusing.in_host(None);
                    let heavy = ctx.data().heavy.replace(false);
                    if let (Some((at, waited_before)), Some(capability)) =
                        (entered.take(), ctx.data().calling.take())
                    {
                        let took = at.elapsed();
                        metrics.host_call(capability, took);
                        // Only waiting on the store is excused, past the
                        // charge, and not for a call that moved much data:
                        // work done for the app is the app's time.
                        let waited = waits::waited().saturating_sub(waited_before).min(took);
                        if capability != Capability::Http && !heavy && waited > HOST_CALL_CHARGE {
                            let delay = waited - HOST_CALL_CHARGE;
                            excusing.excuse(delay);
                            delayed += delay;
                            if delayed > host_delay {
                                ctx.data_mut().host_delayed = Some(delayed);
                                return Err(wasmtime::Error::msg(
                                    "the host kept the event waiting",
                                ));
                            }
                        }
                    }
                }
                CallHook::CallingWasm | CallHook::ReturningFromWasm => {}
            }
            Ok(())
        });
        let budget = Duration::from_millis(limits.time_ms);
        let tick = self.config.epoch_tick;
        store.set_epoch_deadline(1);
        let clock = turn.clone();
        store.epoch_deadline_callback(move |mut ctx| {
            if clock.used() >= budget {
                ctx.data_mut().meter.breach = Some(Breach::Time {
                    limit_ms: limits.time_ms,
                });
                return Err(wasmtime::Error::msg("time limit exceeded"));
            }
            if clock.should_yield() {
                // Another app is waiting for a core: step aside for it.
                return Ok(UpdateDeadline::YieldCustom(
                    1,
                    Box::pin(clock.clone().yield_slot()),
                ));
            }
            // A tick that lands in an event younger than a tick lets it run
            // on: yielding would keep its slot idle while every task queued
            // on this worker runs first (under load, milliseconds for an
            // event of tens of microseconds), and it holds the executor no
            // longer than a tick anyway.
            if clock.used() < tick {
                return Ok(UpdateDeadline::Continue(1));
            }
            // Let the executor run other tasks every tick. Tokio's own yield
            // also polls its I/O and timer drivers before this task runs
            // again, so requests and wake-ups are not held up behind wasm.
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::task::yield_now()),
            ))
        });
        let ctx = Context {
            app_id: app.manifest.id.clone(),
            app_version: app.version.clone(),
            locale: invocation.locale.clone(),
            params: invocation.params.clone(),
        };

        let running = waits::counted(async {
            let instance = match app.pre.instance_pre().instantiate_async(&mut store).await {
                Ok(i) => i,
                Err(e) => return Err((true, e)),
            };
            let result = match call {
                Call::Launch => match app.exports.launch(&mut store, &instance) {
                    Ok(f) => f.call_async(&mut store, (&ctx,)).await,
                    Err(e) => Err(e),
                },
                Call::Event(event) => match app.exports.event(&mut store, &instance) {
                    Ok(f) => f.call_async(&mut store, (&ctx, event)).await,
                    Err(e) => Err(e),
                },
            };
            result.map(|(answer,)| answer).map_err(|e| (false, e))
        });
        // The backstop for an event stuck in a host call, counted in
        // running time like the limit itself.
        // Read before the event is dropped: dropping it ends the host call.
        let mut stuck_in_host = None;
        let outcome = {
            tokio::pin!(running);
            loop {
                // Waits being excused count until their host call returns.
                let left = (budget + host_delay + BACKSTOP).saturating_sub(turn.used());
                if left.is_zero() {
                    stuck_in_host = turn.in_host_since();
                    break None;
                }
                tokio::select! {
                    biased;
                    done = &mut running => break Some(done),
                    () = tokio::time::sleep(left) => {}
                }
            }
        };
        *running_time = turn.used();

        let state = store.data_mut();
        match outcome {
            // The backstop ended it while a host call kept it waiting: the
            // host's delay (its own calls bound their waits), not the app's.
            None if stuck_in_host.is_some() => Err(RunError::HostDelayed {
                app: label(),
                waited: stuck_in_host.map_or(Duration::ZERO, |at| at.elapsed()),
            }),
            None => Err(RunError::Limit {
                app: label(),
                limit: Limit::Time {
                    limit_ms: limits.time_ms,
                },
            }),
            Some(Err((instantiating, e))) => Err(failure(label(), state, instantiating, e)),
            Some(Ok(Err(error))) => Err(RunError::App {
                app: label(),
                error: crate::error::bounded_app_error(error),
            }),
            Some(Ok(Ok(raw))) => {
                let checked = if view::draws_qr_codes(&raw) {
                    // Drawing codes takes milliseconds: not on a thread
                    // that serves requests.
                    tokio::task::spawn_blocking(move || view::validate(&raw, &limits))
                        .await
                        .unwrap_or_else(|_| {
                            Err(ViewError::BadNode {
                                node: 0,
                                message: "the view could not be checked".into(),
                            })
                        })
                } else {
                    view::validate(&raw, &limits)
                };
                checked
            }
            .map_err(|error| match error {
                ViewError::TooManyNodes { .. }
                | ViewError::TooManyBytes { .. }
                | ViewError::TooDeep
                | ViewError::StringTooLong(_) => RunError::Limit {
                    app: label(),
                    limit: Limit::View {
                        detail: error.to_string(),
                    },
                },
                error => RunError::InvalidView {
                    app: label(),
                    error,
                },
            }),
        }
    }
}

/// Explain a failed instantiation or call: a recorded limit breach first,
/// then a reported panic, then the trap itself.
fn failure(
    app: String,
    state: &mut HostState,
    instantiating: bool,
    error: wasmtime::Error,
) -> RunError {
    if let Some(waited) = state.host_delayed {
        return RunError::HostDelayed { app, waited };
    }
    if let Some(breach) = state.meter.breach {
        let limit = match breach {
            Breach::Memory { limit, requested } => Limit::Memory {
                limit_bytes: limit,
                requested_bytes: requested,
            },
            Breach::Table { limit, requested } => Limit::Table {
                limit_elements: limit,
                requested_elements: requested,
            },
            Breach::Time { limit_ms } => Limit::Time { limit_ms },
        };
        return RunError::Limit { app, limit };
    }
    if let Some(message) = state.panic_message.take() {
        return RunError::Panic { app, message };
    }
    if instantiating {
        return RunError::Instantiate {
            app,
            reason: format!("{error:#}"),
        };
    }
    let reason = match error.downcast_ref::<Trap>() {
        Some(Trap::StackOverflow) => "stack overflow (recursion too deep)".to_string(),
        Some(trap) => trap.to_string(),
        None => format!("{error:#}"),
    };
    RunError::Trap { app, reason }
}
