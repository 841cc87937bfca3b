//! Seeds app statuses for the HTTP benchmark (`bench/http.sh`).
//!
//! No HTTP endpoint writes app statuses yet, so this goes through the
//! library's store functions on the database file (never raw SQL). Safe to run
//! while the server runs on the same file (WAL and a busy timeout).
//!
//! ```text
//! cargo run --release --example bench_seed -- --db PATH --agent-id UUID [--count 20]
//! ```
//!
//! Inserts COUNT statuses round-robin over the agent's apps and prints how many
//! it wrote.

use std::path::PathBuf;
use std::process::ExitCode;

use appliance::store::{self, Store};
use time::OffsetDateTime;
use uuid::Uuid;

const USAGE: &str = "usage: bench_seed --db PATH --agent-id UUID [--count N]";
const STATES: [&str; 4] = ["working", "idle", "complete", "failure"];

struct Args {
    db: PathBuf,
    agent_id: Uuid,
    count: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut db = None;
    let mut agent_id = None;
    let mut count = 20;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--db" => db = Some(PathBuf::from(value("--db")?)),
            "--agent-id" => {
                let v = value("--agent-id")?;
                agent_id = Some(Uuid::parse_str(&v).map_err(|e| format!("--agent-id {v}: {e}"))?);
            }
            "--count" => {
                let v = value("--count")?;
                count = v.parse().map_err(|e| format!("--count {v}: {e}"))?;
            }
            // An empty error means: print the usage and succeed.
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    Ok(Args {
        db: db.ok_or("--db is required")?,
        agent_id: agent_id.ok_or("--agent-id is required")?,
        count,
    })
}

fn run(args: &Args) -> Result<usize, String> {
    if !args.db.exists() {
        return Err(format!(
            "{} does not exist: start the server on it first",
            args.db.display()
        ));
    }
    let store = Store::open(&args.db, &store::Options::default())
        .map_err(|e| format!("opening {}: {e}", args.db.display()))?;
    let count = args.count;
    let agent_id = args.agent_id;
    store
        .write(|tx| {
            let agent = store::agents::live_agent(tx, agent_id)?.ok_or_else(|| {
                store::StoreError::Other(format!("no live agent with id {agent_id}"))
            })?;
            let apps = store::agents::apps(tx, agent_id)?;
            if apps.is_empty() && count > 0 {
                return Err(store::StoreError::Other(format!(
                    "agent {agent_id} has no apps to attach statuses to"
                )));
            }
            let now = OffsetDateTime::now_utc();
            for i in 0..count {
                let app = &apps[i % apps.len()];
                let uri = (i % 2 == 0).then(|| format!("https://example.internal/runs/{i}"));
                store::agents::insert_app_status(
                    tx,
                    &agent,
                    app.id,
                    STATES[i % STATES.len()],
                    &format!("benchmark status {i} of {count}"),
                    uri.as_deref(),
                    // Distinct timestamps, so the newest-first order is stable.
                    now - time::Duration::milliseconds(i as i64),
                    // Keep all of them (the server keeps an agent's newest 100).
                    count.max(1),
                )?;
            }
            Ok(count)
        })
        .map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("bench_seed: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(n) => {
            println!("inserted {n} app statuses for agent {}", args.agent_id);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench_seed: {e}");
            ExitCode::FAILURE
        }
    }
}
