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
//!
//! ```text
//! cargo run --release --example bench_seed -- agents --db PATH --count N --out FILE [--owner admin] [--prefix rpc-]
//! ```
//!
//! `agents` (for `bench/rpc.sh`): COUNT workspaces named PREFIX00001… owned by
//! OWNER, each with one token agent `main`, applied through the library as
//! `appliance workspace apply` does (500 per transaction); writes
//! `{"agents":[{"id","name","workspace","token"}…]}` to FILE (tokens go to a
//! file, never to stdout) and prints how many it made.

use std::path::PathBuf;
use std::process::ExitCode;

use appliance::store::{self, Store};
use time::OffsetDateTime;
use uuid::Uuid;

const USAGE: &str = "usage: bench_seed --db PATH --agent-id UUID [--count N]\n       bench_seed agents --db PATH --count N --out FILE [--owner admin] [--prefix rpc-]";
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

/// `agents`: COUNT one-agent workspaces and their tokens.
fn seed_agents(mut args: impl Iterator<Item = String>) -> Result<usize, String> {
    let (mut db, mut out, mut count) = (None, None, None);
    let (mut owner, mut prefix) = ("admin".to_string(), "rpc-".to_string());
    while let Some(arg) = args.next() {
        let v = args.next().ok_or(format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--db" => db = Some(PathBuf::from(v)),
            "--out" => out = Some(PathBuf::from(v)),
            "--count" => {
                count = Some(
                    v.parse::<usize>()
                        .map_err(|e| format!("--count {v}: {e}"))?,
                )
            }
            "--owner" => owner = v,
            "--prefix" => prefix = v,
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    let db = db.ok_or("--db is required")?;
    let out = out.ok_or("--out is required")?;
    let count = count.ok_or("--count is required")?;
    if !db.exists() {
        return Err(format!(
            "{} does not exist: start the server on it first",
            db.display()
        ));
    }
    let store = Store::open(&db, &store::Options::default())
        .map_err(|e| format!("opening {}: {e}", db.display()))?;
    let owner_row = store
        .read(|c| store::users::user_by_name(c, &owner))
        .map_err(|e| e.to_string())?
        .ok_or(format!("no user {owner:?}"))?;
    let template = format!(
        "name = \"x\"\nowner = \"{owner}\"\n[[resources]]\nname = \"box\"\ntype = \"bench\"\n[[resources.agents]]\nname = \"main\"\nauth = \"token\"\nos = \"linux\"\narch = \"amd64\"\n"
    );
    let template =
        appliance::manifest::parse("bench.toml", &template).map_err(|e| e.to_string())?;
    let mut agents = Vec::with_capacity(count);
    let mut next = 0;
    while next < count {
        let end = (next + 500).min(count);
        let made = store
            .write(|tx| {
                let now = OffsetDateTime::now_utc();
                let mut made = Vec::new();
                for i in next..end {
                    let mut ws = template.clone();
                    ws.name = format!("{prefix}{:05}", i + 1);
                    let (applied, tokens) = store::workspaces::apply_with_tokens(
                        tx,
                        &ws,
                        owner_row.id,
                        owner_row.id,
                        now,
                        appliance::auth::MAX_LIVE_AGENT_TOKENS,
                        || {
                            let t = appliance::auth::new_agent_token();
                            (t.hash, t.token)
                        },
                    )?;
                    for a in &applied.agents {
                        made.push(serde_json::json!({
                            "id": a.id,
                            "name": a.name,
                            "workspace": ws.name,
                            "token": tokens.get(&a.id),
                        }));
                    }
                }
                Ok(made)
            })
            .map_err(|e| e.to_string())?;
        agents.extend(made);
        next = end;
    }
    let n = agents.len();
    let body = serde_json::json!({ "agents": agents });
    std::fs::write(&out, body.to_string())
        .map_err(|e| format!("writing {}: {e}", out.display()))?;
    Ok(n)
}

fn main() -> ExitCode {
    let mut argv = std::env::args().skip(1).peekable();
    if argv.peek().map(String::as_str) == Some("agents") {
        argv.next();
        return match seed_agents(argv) {
            Ok(n) => {
                println!("made {n} workspaces with one token agent each");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("bench_seed: {e}\n{USAGE}");
                ExitCode::FAILURE
            }
        };
    }
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
