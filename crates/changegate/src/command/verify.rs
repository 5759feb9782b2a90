//! `changegate verify`: recompute the hash chain, the Merkle tree and every signed
//! checkpoint over the whole ledger, and name the first bad event.

use std::process::ExitCode;
use std::time::Instant;

use crate::StoreArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    store: StoreArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = super::open_store(&args.store)?;
    let started = Instant::now();
    let checkpoints = store.checkpoints()?;
    let mut verifier = ledger::Verifier::new(store.verifying_key(), checkpoints);
    let mut fault = None;
    store.for_each_entry(0, &mut |e| match verifier.push(e) {
        Ok(()) => true,
        Err(f) => {
            fault = Some(f);
            false
        }
    })?;
    let result = match fault {
        Some(f) => Err(f),
        None => verifier.finish(),
    };
    match result {
        Ok(summary) => {
            println!(
                "ledger intact: {} events, root {}, {} signed checkpoints verified ({:.2}s)",
                summary.entries,
                hex::encode(summary.root),
                summary.checkpoints_verified,
                started.elapsed().as_secs_f64()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(fault) => {
            eprintln!("ledger broken at event {}: {}", fault.seq, fault.message);
            Ok(ExitCode::from(1))
        }
    }
}
