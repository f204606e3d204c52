//! `netstep-run`: run or lint netstep's Argo pipelines locally. See the library docs.

use std::process::ExitCode;

use clap::Parser;

fn main() -> anyhow::Result<ExitCode> {
    let cli = netstep_run::cli::Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let code = rt.block_on(netstep_run::cli::run(cli));
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}
