//! `sozu`: the master, its workers, and the command-line client, in one binary.

#![forbid(unsafe_code)]

mod cli;
mod ctl;
mod logging;
mod master;
mod sd_notify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::CommandFactory;

use cli::{AuditCmd, Cli, Command, ConfigCmd};

fn config_path(cli: &Cli) -> PathBuf {
    cli.config.clone().unwrap_or_else(|| PathBuf::from("/etc/sozu/config.toml"))
}

fn main() -> ExitCode {
    // `Cli::parse()`, keeping the command tree: freeing its few thousand allocations
    // costs a short-lived CLI process more than the parse itself, and the process is
    // about to exit anyway.
    let mut command = Cli::command();
    let matches = command.get_matches_mut();
    std::mem::forget(command);
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    std::mem::forget(matches);
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            let text = e.to_string();
            if text.starts_with("Request failed") {
                eprintln!("{text}");
            } else {
                eprintln!("error: {text}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Names this process for `top`, `pgrep` and `/proc/<pid>/comm`. A worker and a re-executed
/// master run the binary through an fd (/proc/self/fd/N), which the kernel would name
/// after the fd's number. Best effort: a failure leaves the kernel's name.
fn process_name(name: &std::ffi::CStr) {
    let _ = nix::sys::prctl::set_name(name);
}

fn run(cli: &Cli) -> anyhow::Result<ExitCode> {
    match &cli.command {
        Command::Start { strict } => {
            let clean = master::start(&config_path(cli), *strict)?;
            Ok(if clean { ExitCode::SUCCESS } else { ExitCode::from(2) })
        }
        Command::UpgradeCheck { data_fd } => {
            master::upgrade_check(*data_fd)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Upgraded { data_fd, rollback, rolled_back } => {
            process_name(c"sozu");
            let clean = master::upgraded(*data_fd, rollback.as_deref(), rolled_back.clone())?;
            Ok(if clean { ExitCode::SUCCESS } else { ExitCode::from(2) })
        }
        Command::Worker { id, fd, scm, configuration_state_fd, command_buffer_size, max_command_buffer_size } => {
            process_name(c"sozu-worker");
            let (log, level) = logging::build("info", "stdout", false, &format!("WRK-{id:02}"))?;
            let set_level: sozu_worker::SetLevel = Box::new(move |filter| level.set(filter).map(drop));
            let args = sozu_worker::WorkerArgs {
                id: *id,
                channel_fd: *fd,
                scm_fd: *scm,
                state_fd: *configuration_state_fd,
                command_buffer_size: *command_buffer_size,
                max_command_buffer_size: max_command_buffer_size.unwrap_or(command_buffer_size * 2),
            };
            sozu_worker::run(&args, &log, set_level)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Config { cmd: ConfigCmd::Check { strict } } => {
            let config = sozu_config::Config::load(&config_path(cli)).map_err(|e| anyhow::anyhow!("{e}"))?;
            if !config.unknown_keys().is_empty() {
                let keys = config.unknown_keys().join(", ");
                if *strict {
                    anyhow::bail!("unknown configuration keys: {keys}");
                }
                eprintln!("warning: unknown configuration keys ignored: {keys}");
            }
            // what the master would refuse at boot, it refuses here
            config.state().map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("Configuration file is valid");
            Ok(ExitCode::SUCCESS)
        }
        Command::Audit { cmd: AuditCmd::Verify { file } } => {
            let reader = std::io::BufReader::new(std::fs::File::open(file)?);
            match audit::verify(reader, audit::GENESIS) {
                Ok((n, head)) => {
                    println!("{n} records, chain intact, head {head}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("{e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut Cli::command(), "sozu", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Manpage => {
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            ctl::run(cli, &config_path(cli))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
