//! The client side: one connection to the master per command.

mod build;
mod render;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use sozu_channel::{BlockingChannel, ChannelError, Limits};
use sozu_config::Config;
use sozu_proto::{Request, Response, ResponseStatus};

use crate::cli::{Cli, Command};

pub use build::build_request;

/// A connection to the master.
pub struct Client {
    channel: BlockingChannel<Request, Response>,
    timeout: Option<Duration>,
}

impl Client {
    /// Connects to the command socket named by `config`.
    pub fn connect(config: &Config, timeout_ms: Option<u64>) -> anyhow::Result<Client> {
        // start small (a CLI call is usually a few hundred bytes), grow to the maximum
        let limits = Limits::new(4096, config.max_command_buffer_size);
        let path = &config.command_socket;
        let channel = BlockingChannel::connect(path, limits, limits).map_err(|e| {
            if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) {
                anyhow::anyhow!("cannot connect to the command socket {}: {e} (is sozu running?)", path.display())
            } else {
                anyhow::anyhow!("cannot connect to the command socket {}: {e}", path.display())
            }
        })?;
        let timeout = match timeout_ms {
            Some(0) => None,
            Some(ms) => Some(Duration::from_millis(ms)),
            None if config.ctl_command_timeout.is_zero() => None,
            None => Some(config.ctl_command_timeout),
        };
        Ok(Client { channel, timeout })
    }

    /// Sends `request` and returns the terminal answer (OK), or an error carrying the
    /// FAILURE message. PROCESSING answers are skipped (each resets the timeout).
    pub fn call(&mut self, request: &Request) -> anyhow::Result<Response> {
        self.channel.send(request).context("sending the request")?;
        loop {
            let response = match self.channel.recv(self.timeout) {
                Ok(r) => r,
                Err(ChannelError::TimedOut) => bail!(
                    "no answer within {} ms (use -t to wait longer, -t 0 to wait forever)",
                    self.timeout.map_or(0, |t| t.as_millis())
                ),
                Err(ChannelError::Closed) => bail!("the master closed the connection"),
                Err(e) => bail!("reading the answer: {e}"),
            };
            match ResponseStatus::try_from(response.status) {
                Ok(ResponseStatus::Processing) => continue,
                Ok(ResponseStatus::Ok) => return Ok(response),
                _ => bail!("Request failed: {}", response.message),
            }
        }
    }

    /// Receives the next answer, whatever its status, waiting forever.
    pub fn next(&mut self) -> anyhow::Result<Response> {
        self.channel.recv(None).map_err(|e| anyhow::anyhow!("reading events: {e}"))
    }
}

/// Runs a client command. Returns the process exit status.
pub fn run(cli: &Cli, config_path: &Path) -> anyhow::Result<()> {
    let config = Config::load_client(config_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut client = Client::connect(&config, cli.timeout)?;
    if let Command::Events = cli.command {
        client.channel.send(&sozu_proto::request::RequestType::SubscribeEvents(Default::default()).into())?;
        loop {
            let response = client.next()?;
            render::print_event(&response, cli.json);
        }
    }
    let request = build_request(&cli.command)?;
    let response = client.call(&request)?;
    render::print(&response, cli.json);
    if let Command::Metrics { cmd: crate::cli::MetricsCmd::Get { refresh: Some(seconds), .. } } = cli.command {
        // `metrics get -r N`: the same query on the same connection every N seconds
        loop {
            std::thread::sleep(Duration::from_secs(seconds));
            let response = client.call(&request)?;
            if !cli.json {
                println!();
            }
            render::print(&response, cli.json);
        }
    }
    if let Command::Upgrade { worker: None, main_only: false } = cli.command {
        upgrade_workers(&mut client, cli.json)?;
    }
    Ok(())
}

/// After the master: every running worker, one by one (as Sōzu's CLI does).
fn upgrade_workers(client: &mut Client, json: bool) -> anyhow::Result<()> {
    use sozu_proto::request::RequestType as R;
    use sozu_proto::response_content::ContentType;
    let listed = client.call(&R::ListWorkers(Default::default()).into())?;
    let ids: Vec<u32> = match listed.content.and_then(|c| c.content_type) {
        Some(ContentType::Workers(w)) => {
            w.vec.iter().filter(|w| w.run_state == sozu_proto::RunState::Running as i32).map(|w| w.id).collect()
        }
        _ => Vec::new(),
    };
    for id in ids {
        let response = client.call(&R::UpgradeWorker(id).into())?;
        render::print(&response, json);
    }
    Ok(())
}
