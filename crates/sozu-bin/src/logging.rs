//! slog setup: text or JSON, to stdout, stderr or a file, with a level that can be
//! changed at run time (the `Logging` verb).

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use slog::{Drain, Level, Logger, OwnedKVList, Record, o};

/// The run-time log level, shared by the drain and whoever changes it.
#[derive(Debug, Clone)]
pub struct LevelHandle(Arc<AtomicUsize>);

impl LevelHandle {
    /// Sets the level from a name (`error`, `warn`, `info`, `debug`, `trace`), or the
    /// last `=level` of a RUST_LOG-style filter. Returns the level set.
    pub fn set(&self, filter: &str) -> Result<Level, String> {
        let name = filter.rsplit(['=', ',']).next().unwrap_or(filter).trim();
        let level =
            parse_level(name).ok_or_else(|| format!("{filter:?} is not a level (error, warn, info, debug, trace)"))?;
        self.0.store(level.as_usize(), Ordering::Relaxed);
        Ok(level)
    }
}

fn parse_level(name: &str) -> Option<Level> {
    match name.to_ascii_lowercase().as_str() {
        "error" => Some(Level::Error),
        "warn" | "warning" => Some(Level::Warning),
        "info" => Some(Level::Info),
        "debug" => Some(Level::Debug),
        "trace" => Some(Level::Trace),
        _ => None,
    }
}

struct DynLevel<D> {
    drain: D,
    level: Arc<AtomicUsize>,
}

impl<D: Drain> Drain for DynLevel<D> {
    type Ok = Option<D::Ok>;
    type Err = D::Err;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<Self::Ok, Self::Err> {
        if record.level().as_usize() <= self.level.load(Ordering::Relaxed) {
            self.drain.log(record, values).map(Some)
        } else {
            Ok(None)
        }
    }
}

fn writer(target: &str) -> std::io::Result<Box<dyn Write + Send>> {
    Ok(match target {
        "stderr" => Box::new(std::io::stderr()),
        t if t.starts_with("file://") => {
            Box::new(OpenOptions::new().create(true).append(true).open(&t["file://".len()..])?)
        }
        _ => Box::new(std::io::stdout()),
    })
}

/// A logger for `tag` (`MAIN`, `WRK-01`).
pub fn build(level: &str, target: &str, json: bool, tag: &str) -> std::io::Result<(Logger, LevelHandle)> {
    let handle = LevelHandle(Arc::new(AtomicUsize::new(parse_level(level).unwrap_or(Level::Info).as_usize())));
    let out = writer(target)?;
    let logger = if json {
        let drain = Mutex::new(slog_json::Json::default(out)).map(slog::Fuse);
        Logger::root(DynLevel { drain, level: handle.0.clone() }.fuse(), o!("tag" => tag.to_string()))
    } else {
        let decorator = slog_term::PlainSyncDecorator::new(out);
        let drain = slog_term::FullFormat::new(decorator).build().fuse();
        Logger::root(DynLevel { drain, level: handle.0.clone() }.fuse(), o!("tag" => tag.to_string()))
    };
    Ok((logger, handle))
}
