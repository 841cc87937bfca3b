//! The agent side of sign-in: `appliance agent auth`, run on the workspace
//! machine, gets the agent's session token the way Coder's agent does
//! (coder/coder:codersdk/agentsdk/{aws,azure,google}.go).
//!
//! With an instance identity it fetches the proof from the cloud's metadata
//! service ([`metadata`]), posts it to
//! `POST /api/v2/workspaceagents/{aws,azure,google}-instance-identity` without
//! a session token, and prints the `session_token` of the answer. With
//! `--auth token` it only checks and echoes the token it was given, so scripts
//! can call `agent auth` the same way whatever the agent's auth.
//!
//! Retries: network errors, 5xx and 429 (honouring `Retry-After`) are retried
//! with exponential backoff (1 s doubling to 30 s, ±20 % jitter) until
//! `--timeout`; any other answer (400, 401, 404, 409, ...) stops at once with
//! the server's message, since asking again cannot change it. Progress goes
//! to stderr, the token alone to stdout (or to `--token-file`, mode 0600).
//!
//! `appliance agent logs` ([`logs`]) ships lines read from stdin to the
//! server as the agent's logs, in batches, as Coder's agent ships a startup
//! script's output.
//!
//! Blocking I/O only (`ureq`): these are one-shot commands, no runtime needed.
//! They read no configuration file and open no database.

mod http;
pub mod logs;
mod metadata;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};

use self::http::{Client, Failure};

/// `appliance agent ...`: commands run on the workspace machine.
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Get this machine's agent session token and print it.
    ///
    /// With --auth aws-instance-identity, azure-instance-identity or
    /// google-instance-identity, fetches the instance's identity proof from
    /// the cloud metadata service (as Coder's agent does), exchanges it at the
    /// server for the agent's session token and prints the token alone on
    /// stdout (or writes it to --token-file). With --auth token, checks and
    /// echoes --token / CODER_AGENT_TOKEN.
    ///
    /// Network errors, 5xx and 429 answers are retried with backoff until
    /// --timeout; other refusals (400, 401, 404, 409) stop at once with the
    /// server's message.
    // Its flags after the global ones (--config, --db, --output), not interleaved.
    #[command(after_help = AUTH_AFTER_HELP, next_display_order = 10)]
    Auth(AuthOptions),
    /// Ship lines read from stdin to the server as the agent's logs.
    ///
    /// Reads stdin line by line and sends the lines in batches (one a second,
    /// or sooner at 1 MiB) with the agent token, under the log source named
    /// by --source, until stdin ends and the server has accepted every line.
    /// How a startup script's output reaches the server:
    /// `./setup.sh 2>&1 | appliance agent logs --source Startup`.
    ///
    /// Network errors, 5xx and 429 answers are retried with backoff until
    /// --timeout passes without progress; other refusals (401, 400) stop at
    /// once with the server's message.
    #[command(after_help = logs::LOGS_AFTER_HELP, next_display_order = 10)]
    Logs(logs::LogsOptions),
}

const AUTH_AFTER_HELP: &str = "\
Examples:
  # On an EC2 instance whose id is a resource's instance_id in a workspace manifest:
  CODER_AGENT_URL=https://appliance.example.internal \\
  CODER_AGENT_AUTH=aws-instance-identity \\
    appliance agent auth

  # Several agents on one instance: say which one this is.
  appliance agent auth --url https://appliance.example.internal \\
    --auth google-instance-identity --agent-name dev --token-file /run/coder/token

Exit status is 0 when a token was printed or written, 1 otherwise.";

/// How the agent authenticates (Coder's `--auth` / `CODER_AGENT_AUTH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMethod {
    /// The agent token given by --token / CODER_AGENT_TOKEN.
    Token,
    /// The EC2 instance identity document and its signature (IMDSv2).
    AwsInstanceIdentity,
    /// The Azure IMDS attested document.
    AzureInstanceIdentity,
    /// A Google Compute Engine instance identity token (JWT).
    GoogleInstanceIdentity,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Token => "token",
            AuthMethod::AwsInstanceIdentity => "aws-instance-identity",
            AuthMethod::AzureInstanceIdentity => "azure-instance-identity",
            AuthMethod::GoogleInstanceIdentity => "google-instance-identity",
        }
    }
}

pub const DEFAULT_AWS_METADATA_URL: &str = "http://169.254.169.254";
pub const DEFAULT_AZURE_METADATA_URL: &str = "http://169.254.169.254";
/// Google's documented metadata address. Coder's agent (through
/// cloud.google.com/go/compute/metadata) uses the IP rather than
/// `metadata.google.internal`, so no DNS is needed; it honours
/// `GCE_METADATA_HOST` the same way.
pub const DEFAULT_GCP_METADATA_URL: &str = "http://169.254.169.254";
/// The Go metadata library's variable naming the GCE metadata host (`HOST[:PORT]`).
pub const GCE_METADATA_HOST_ENV: &str = "GCE_METADATA_HOST";

/// Options of `appliance agent auth`; also the input of [`auth`].
#[derive(Debug, Clone, Args)]
pub struct AuthOptions {
    /// The server's URL, as agents reach it (e.g. https://appliance.example.internal).
    #[arg(long, env = "CODER_AGENT_URL", value_name = "URL")]
    pub url: String,
    /// How to authenticate.
    #[arg(long, env = "CODER_AGENT_AUTH", value_enum, default_value_t = AuthMethod::Token)]
    pub auth: AuthMethod,
    /// Which agent this is, when one instance carries several (instance
    /// identity only; sent only when not empty).
    #[arg(
        long,
        env = "CODER_AGENT_NAME",
        value_name = "NAME",
        default_value = "",
        hide_default_value = true
    )]
    pub agent_name: String,
    /// The agent token, for --auth token.
    #[arg(
        long,
        env = "CODER_AGENT_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Write the token to this file (mode 0600, replaced atomically) instead
    /// of printing it.
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Give up retrying after this long (e.g. 30s, 5m, 1h; 0 = one attempt).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Trust only the CA certificates in this PEM file for an https:// --url
    /// (default: the Mozilla roots built into the binary).
    #[arg(long, env = "SSL_CERT_FILE", value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Base URL of the AWS instance metadata service (IMDS).
    #[arg(
        long,
        env = "APPLIANCE_AGENT_AWS_METADATA_URL",
        value_name = "URL",
        default_value = DEFAULT_AWS_METADATA_URL
    )]
    pub aws_metadata_url: String,
    /// Base URL of the Azure instance metadata service (IMDS).
    #[arg(
        long,
        env = "APPLIANCE_AGENT_AZURE_METADATA_URL",
        value_name = "URL",
        default_value = DEFAULT_AZURE_METADATA_URL
    )]
    pub azure_metadata_url: String,
    /// Base URL of the Google Compute Engine metadata server [default:
    /// http://$GCE_METADATA_HOST if set, else http://169.254.169.254].
    #[arg(long, env = "APPLIANCE_AGENT_GCP_METADATA_URL", value_name = "URL")]
    pub gcp_metadata_url: Option<String>,
    /// The VM's service account whose identity token is requested.
    #[arg(long, value_name = "NAME", default_value = "default")]
    pub gcp_service_account: String,
}

impl AuthOptions {
    /// Options with the defaults for everything but the server URL and method.
    pub fn new(url: impl Into<String>, auth: AuthMethod) -> AuthOptions {
        AuthOptions {
            url: url.into(),
            auth,
            agent_name: String::new(),
            token: None,
            token_file: None,
            timeout: Duration::from_secs(300),
            ca_file: None,
            aws_metadata_url: DEFAULT_AWS_METADATA_URL.to_owned(),
            azure_metadata_url: DEFAULT_AZURE_METADATA_URL.to_owned(),
            gcp_metadata_url: None,
            gcp_service_account: "default".to_owned(),
        }
    }

    /// The GCE metadata base URL: the flag, else `GCE_METADATA_HOST`, else the default.
    fn gcp_base(&self) -> String {
        if let Some(url) = &self.gcp_metadata_url {
            return url.clone();
        }
        match std::env::var(GCE_METADATA_HOST_ENV) {
            Ok(host) if !host.trim().is_empty() => format!("http://{}", host.trim()),
            _ => DEFAULT_GCP_METADATA_URL.to_owned(),
        }
    }
}

/// Runs an `appliance agent` command.
pub fn run(cmd: AgentCommand) -> anyhow::Result<()> {
    match cmd {
        AgentCommand::Auth(opts) => {
            let token = auth(&opts)?;
            match &opts.token_file {
                Some(path) => {
                    write_token_file(path, &token)?;
                    eprintln!("wrote the agent session token to {}", path.display());
                }
                None => {
                    let mut stdout = std::io::stdout().lock();
                    writeln!(stdout, "{token}").context("writing the token to stdout")?;
                    stdout.flush().context("writing the token to stdout")?;
                }
            }
            Ok(())
        }
        AgentCommand::Logs(opts) => logs::run(&opts),
    }
}

/// Returns the agent's session token: the given one for `--auth token`,
/// otherwise the server's answer to the instance's identity proof, retrying
/// transient failures until `opts.timeout`. Progress goes to stderr.
pub fn auth(opts: &AuthOptions) -> anyhow::Result<String> {
    let base = server_base(&opts.url)?;
    let metadata_base = match opts.auth {
        AuthMethod::Token => {
            let token = opts.token.as_deref().unwrap_or("");
            check_token(token)?;
            return Ok(token.to_owned());
        }
        AuthMethod::AwsInstanceIdentity => opts.aws_metadata_url.clone(),
        AuthMethod::AzureInstanceIdentity => opts.azure_metadata_url.clone(),
        AuthMethod::GoogleInstanceIdentity => opts.gcp_base(),
    };
    let metadata_base = base_url(&metadata_base, "metadata service URL")?;
    let client = Client::new(&base, opts.ca_file.as_deref())?;
    let request = metadata::Request {
        method: opts.auth,
        base: &metadata_base,
        gcp_service_account: &opts.gcp_service_account,
        agent_name: opts.agent_name.trim(),
    };

    let start = Instant::now();
    let deadline = start
        .checked_add(opts.timeout)
        .context("--timeout is too long")?;
    let mut backoff = Backoff::new();
    let mut attempt = 1u32;
    loop {
        let result = metadata::fetch(&client, &request, deadline)
            .and_then(|proof| client.exchange(opts.auth, &proof, deadline));
        let (reason, retry_after) = match result {
            Ok(token) => {
                if attempt > 1 {
                    eprintln!("agent auth: signed in on attempt {attempt}");
                }
                return Ok(token);
            }
            Err(Failure::Fatal(e)) => return Err(e),
            Err(Failure::Transient {
                reason,
                retry_after,
            }) => (reason, retry_after),
        };
        let now = Instant::now();
        let left = deadline.saturating_duration_since(now);
        if left < MIN_LAST_WAIT {
            bail!(
                "gave up after {attempt} attempt{} in {} (--timeout {}): {reason}",
                if attempt == 1 { "" } else { "s" },
                fmt_duration(now - start),
                fmt_duration(opts.timeout),
            );
        }
        let wait = retry_after
            .unwrap_or_else(|| backoff.next_delay())
            .min(left);
        eprintln!(
            "agent auth: attempt {attempt} failed: {reason}; retrying in {}",
            fmt_duration(wait)
        );
        std::thread::sleep(wait);
        attempt += 1;
    }
}

/// Below this much time left there is no point in another attempt.
const MIN_LAST_WAIT: Duration = Duration::from_millis(100);

/// Exponential backoff: 1 s, doubling, at most 30 s, each with ±20 % jitter
/// so that a fleet booting together does not retry in lockstep.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(30);

    fn new() -> Backoff {
        Backoff {
            next: Backoff::FIRST,
        }
    }

    /// The next delay without jitter, advancing the sequence.
    fn next_base(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Backoff::MAX);
        d
    }

    fn next_delay(&mut self) -> Duration {
        self.next_base().mul_f64(rand::random_range(0.8..1.2))
    }
}

/// `--url` without its trailing slashes; must be http(s) with a host.
fn server_base(url: &str) -> anyhow::Result<String> {
    if url.trim().is_empty() {
        bail!("the server URL is empty: pass --url or set CODER_AGENT_URL");
    }
    base_url(url, "--url / CODER_AGENT_URL")
}

fn base_url(url: &str, what: &str) -> anyhow::Result<String> {
    let url = url.trim();
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => {
            if url.contains(['?', '#']) || url.chars().any(char::is_whitespace) {
                bail!("{what} {url:?} must be a plain base URL, without query or fragment");
            }
            Ok(url.trim_end_matches('/').to_owned())
        }
        _ => bail!("{what} {url:?} is not an http:// or https:// URL with a host"),
    }
}

/// `--auth token`: the token must be there and look like one.
fn check_token(token: &str) -> anyhow::Result<()> {
    if token.is_empty() {
        bail!("--auth token needs the agent token: pass --token or set CODER_AGENT_TOKEN");
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!(
            "the agent token (--token / CODER_AGENT_TOKEN) contains whitespace: pass the token alone"
        );
    }
    Ok(())
}

/// Writes `token` to `path` with mode 0600: into a new file beside it, then
/// renamed over it, so a reader never sees half a token or a wider mode.
fn write_token_file(path: &Path, token: &str) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("--token-file {} does not name a file", path.display()))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        #[cfg(unix)]
        {
            // The umask can only narrow the mode; make it exactly 0600.
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        file.write_all(token.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing the token to {}", path.display()));
    }
    Ok(())
}

/// Parses `90s`, `5m`, `1h30m`, `500ms`, `0`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration: use e.g. 30s, 5m, 1h30m");
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        let part = u32::try_from(n)
            .ok()
            .and_then(|n| unit.checked_mul(n))
            .ok_or_else(bad)?;
        total = total.checked_add(part).ok_or_else(bad)?;
    }
    Ok(total)
}

/// `1.5s`, `30s`, `2m30s`, `250ms`: short and readable in progress lines.
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0".to_owned();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    if secs < 60 {
        let tenths = (ms % 1000) / 100;
        return if tenths == 0 {
            format!("{secs}s")
        } else {
            format!("{secs}.{tenths}s")
        };
    }
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["", "5", "m", "5x", "-1s", "1.5s", "5 m", "99999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_format() {
        assert_eq!(fmt_duration(Duration::ZERO), "0");
        assert_eq!(fmt_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(fmt_duration(Duration::from_secs(30)), "30s");
        assert_eq!(fmt_duration(Duration::from_secs(300)), "5m");
        assert_eq!(fmt_duration(Duration::from_secs(3725)), "1h2m5s");
    }

    #[test]
    fn backoff_doubles_up_to_thirty_seconds() {
        let mut b = Backoff::new();
        let got: Vec<u64> = (0..8).map(|_| b.next_base().as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 16, 30, 30, 30]);
        let mut b = Backoff::new();
        for _ in 0..100 {
            let d = b.next_delay();
            assert!(
                d >= Duration::from_millis(800) && d <= Duration::from_secs(36),
                "{d:?}"
            );
        }
    }

    #[test]
    fn base_urls() {
        assert_eq!(
            server_base("https://a.example/").unwrap(),
            "https://a.example"
        );
        assert_eq!(
            server_base("http://127.0.0.1:3000").unwrap(),
            "http://127.0.0.1:3000"
        );
        assert_eq!(server_base("https://h/coder//").unwrap(), "https://h/coder");
        for bad in [
            "",
            "a.example",
            "ftp://a",
            "http://",
            "https:///x",
            "http://a/?q=1",
        ] {
            assert!(server_base(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens() {
        assert!(check_token("9d1c2f6c-1111-4222-8333-444455556666").is_ok());
        assert!(check_token("").is_err());
        assert!(check_token("a b").is_err());
        assert!(check_token("a\n").is_err());
    }
}
