//! `GET /bin/{name}` and `HEAD` (Coder's agent binaries from
//! `agent_binaries.dir`, as coderd serves them), `check-config`'s listing of
//! the directory, and the start lines `workspace apply` prints.
//!
//! Requests go over a raw socket, so that paths reach the server exactly as
//! written (`..`, `%2f`) and bodies are compared as bytes.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use crate::harness::{Options, Sandbox, TestServer, agent};

/// A response read off the socket.
#[derive(Debug)]
struct Raw {
    status: u16,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    fn json(&self) -> serde_json::Value {
        assert_eq!(
            self.header("content-type"),
            Some("application/json; charset=utf-8")
        );
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    /// Coder's error shape with this status and message.
    #[track_caller]
    fn assert_error(&self, status: u16, message: &str) -> serde_json::Value {
        assert_eq!(
            self.status,
            status,
            "{:?}",
            String::from_utf8_lossy(&self.body)
        );
        let body = self.json();
        assert_eq!(body["message"], message, "{body}");
        body
    }
}

/// One request, `Connection: close`, the path sent as written.
fn raw(server: &TestServer, method: &str, path: &str, headers: &[(&str, &str)]) -> Raw {
    let mut s = TcpStream::connect(server.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: appliance\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).expect("read the response");
    let end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8(all[..end].to_vec()).expect("an ASCII head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Raw {
        status,
        headers,
        body: all[end + 4..].to_vec(),
    }
}

/// A binary-looking file: every byte value, not a repeating pattern.
fn contents(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn sha1_hex(bytes: &[u8]) -> String {
    use sha1::Digest;
    sha1::Sha1::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A directory of binaries (and things that must not be served), with a
/// secret beside it, and a server serving it.
struct Fixture {
    server: TestServer,
    /// The served directory, `bin/` inside `_root` (which holds the secret).
    dir: std::path::PathBuf,
    binary: Vec<u8>,
    _root: tempfile::TempDir,
}

const SECRET: &str = "the secret outside the directory";

fn fixture() -> Fixture {
    let root = tempfile::tempdir().unwrap();
    // Beside the directory: what `..` and the symlink would reach.
    std::fs::write(root.path().join("secret"), SECRET).unwrap();
    let dir = root.path().join("bin");
    std::fs::create_dir(&dir).unwrap();
    let binary = contents(300_000);
    std::fs::write(dir.join("coder-linux-amd64"), &binary).unwrap();
    std::fs::write(dir.join(".hidden"), SECRET).unwrap();
    std::fs::create_dir(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub").join("inner"), SECRET).unwrap();
    std::os::unix::fs::symlink(root.path().join("secret"), dir.join("escape")).unwrap();
    let server = TestServer::start_with(Options {
        config: format!("[agent_binaries]\ndir = {:?}\n", dir.to_str().unwrap()),
        ..Options::default()
    });
    Fixture {
        server,
        dir,
        binary,
        _root: root,
    }
}

#[test]
fn serves_the_file_with_coderds_headers_and_head() {
    let fx = fixture();
    let etag = format!("\"{}\"", sha1_hex(&fx.binary));
    let resp = raw(&fx.server, "GET", "/bin/coder-linux-amd64", &[]);
    assert_eq!(resp.status, 200);
    assert!(resp.body == fx.binary, "the body is the file");
    assert_eq!(
        resp.header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(resp.header("content-length"), Some("300000"));
    assert_eq!(resp.header("x-original-content-length"), Some("300000"));
    assert_eq!(resp.header("etag"), Some(etag.as_str()));
    assert_eq!(resp.header("accept-ranges"), Some("bytes"));
    assert!(resp.header("transfer-encoding").is_none());
    let modified = resp.header("last-modified").expect("Last-Modified");
    assert!(modified.ends_with(" GMT"), "{modified}");

    let head = raw(&fx.server, "HEAD", "/bin/coder-linux-amd64", &[]);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    for h in [
        "content-type",
        "content-length",
        "etag",
        "accept-ranges",
        "last-modified",
    ] {
        assert_eq!(head.header(h), resp.header(h), "{h}");
    }

    // coderd's underscore spelling of the same file.
    let underscored = raw(&fx.server, "GET", "/bin/coder_linux_amd64", &[]);
    assert_eq!(underscored.status, 200);
    assert_eq!(underscored.header("etag"), Some(etag.as_str()));

    // Anything but GET and HEAD: Coder's 405.
    let post = raw(&fx.server, "POST", "/bin/coder-linux-amd64", &[]);
    post.assert_error(405, "Method not allowed.");
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
}

#[test]
fn etag_and_conditional_requests() {
    let fx = fixture();
    let path = "/bin/coder-linux-amd64";
    let etag = raw(&fx.server, "HEAD", path, &[])
        .header("etag")
        .unwrap()
        .to_owned();
    let modified = raw(&fx.server, "HEAD", path, &[])
        .header("last-modified")
        .unwrap()
        .to_owned();

    for inm in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"other\", {etag}"),
        "*".into(),
    ] {
        for method in ["GET", "HEAD"] {
            let r = raw(&fx.server, method, path, &[("If-None-Match", &inm)]);
            assert_eq!(r.status, 304, "{method} If-None-Match: {inm}");
            assert!(r.body.is_empty());
            assert_eq!(r.header("etag"), Some(etag.as_str()));
            assert!(r.header("content-type").is_none());
        }
    }
    let other = raw(&fx.server, "GET", path, &[("If-None-Match", "\"other\"")]);
    assert_eq!(other.status, 200);
    assert_eq!(other.body.len(), 300_000);
    // If-Modified-Since counts only without If-None-Match.
    let ims = raw(&fx.server, "GET", path, &[("If-Modified-Since", &modified)]);
    assert_eq!(ims.status, 304);
    let both = raw(
        &fx.server,
        "GET",
        path,
        &[("If-Modified-Since", &modified), ("If-None-Match", "\"x\"")],
    );
    assert_eq!(both.status, 200);
    // If-Match.
    assert_eq!(
        raw(&fx.server, "GET", path, &[("If-Match", &etag)]).status,
        200
    );
    raw(&fx.server, "GET", path, &[("If-Match", "\"other\"")])
        .assert_error(412, "Precondition failed.");

    // A new version of the file (replaced as `mv` does), and a new file:
    // served at once, with a new ETag, without a restart.
    let new = contents(1000);
    let tmp = fx.dir.join(".coder-linux-amd64.new");
    std::fs::write(&tmp, &new).unwrap();
    std::fs::rename(&tmp, fx.dir.join("coder-linux-amd64")).unwrap();
    let r = raw(&fx.server, "GET", path, &[("If-None-Match", &etag)]);
    assert_eq!(r.status, 200, "the old ETag no longer matches");
    assert_eq!(r.body, new);
    assert_eq!(
        r.header("etag"),
        Some(format!("\"{}\"", sha1_hex(&new)).as_str())
    );
    std::fs::write(fx.dir.join("coder-darwin-arm64"), b"mac").unwrap();
    let mac = raw(&fx.server, "GET", "/bin/coder-darwin-arm64", &[]);
    assert_eq!((mac.status, mac.body.as_slice()), (200, &b"mac"[..]));
}

#[test]
fn range_requests() {
    let fx = fixture();
    let path = "/bin/coder-linux-amd64";
    let size = fx.binary.len();
    let etag = raw(&fx.server, "HEAD", path, &[])
        .header("etag")
        .unwrap()
        .to_owned();
    let range = |value: &str| raw(&fx.server, "GET", path, &[("Range", value)]);

    let first = range("bytes=0-9");
    assert_eq!(first.status, 206);
    assert_eq!(first.body, fx.binary[..10]);
    assert_eq!(first.header("content-length"), Some("10"));
    assert_eq!(
        first.header("content-range"),
        Some(format!("bytes 0-9/{size}").as_str())
    );
    assert_eq!(first.header("etag"), Some(etag.as_str()));

    let suffix = range("bytes=-10");
    assert_eq!(suffix.status, 206);
    assert_eq!(suffix.body, fx.binary[size - 10..]);
    assert_eq!(
        suffix.header("content-range"),
        Some(format!("bytes {}-{}/{size}", size - 10, size - 1).as_str())
    );

    let open = range("bytes=5-");
    assert_eq!(open.status, 206);
    assert_eq!(open.body, fx.binary[5..]);
    assert_eq!(
        open.header("content-length"),
        Some((size - 5).to_string().as_str())
    );

    let past = range("bytes=299990-400000");
    assert_eq!(past.status, 206);
    assert_eq!(past.body, fx.binary[299_990..]);

    // HEAD with a range: its headers, no body.
    let head = raw(&fx.server, "HEAD", path, &[("Range", "bytes=0-9")]);
    assert_eq!(head.status, 206);
    assert_eq!(head.header("content-length"), Some("10"));
    assert!(head.body.is_empty());

    // Unsatisfiable: 416 with the size.
    for value in [format!("bytes={size}-"), "bytes=900000-900010".into()] {
        let r = range(&value);
        r.assert_error(416, "Requested range not satisfiable.");
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes */{size}").as_str()),
            "{value}"
        );
    }
    // Malformed: 416 too, as Go's http.ServeContent.
    for value in ["bytes=9-1", "bytes=a-b", "lines=0-1"] {
        range(value).assert_error(416, "Requested range not satisfiable.");
    }
    // Several ranges: the whole file.
    let several = range("bytes=0-1,5-6");
    assert_eq!(several.status, 200);
    assert_eq!(several.body, fx.binary);

    // If-Range: the range applies only to the version it names.
    let same = raw(
        &fx.server,
        "GET",
        path,
        &[("Range", "bytes=0-9"), ("If-Range", &etag)],
    );
    assert_eq!(same.status, 206);
    let changed = raw(
        &fx.server,
        "GET",
        path,
        &[("Range", "bytes=0-9"), ("If-Range", "\"older\"")],
    );
    assert_eq!(changed.status, 200);
    assert_eq!(changed.body, fx.binary);
}

#[test]
fn only_plain_file_names_inside_the_directory_are_served() {
    let fx = fixture();
    for path in [
        "/bin/missing",
        "/bin/.hidden",
        "/bin/escape",
        "/bin/sub",
        "/bin/..",
        "/bin/..%2fsecret",
        "/bin/..%2Fsecret",
        "/bin/%2e%2e%2fsecret",
        "/bin/%2e%2e",
        "/bin/..%2f..%2f..%2fetc%2fpasswd",
        "/bin/%2fetc%2fpasswd",
        "/bin/sub%2finner",
        "/bin/..%5csecret",
        "/bin/a%00b",
        "/bin/%ff",
    ] {
        let r = raw(&fx.server, "GET", path, &[]);
        let body = r.assert_error(404, "Agent binary not found.");
        assert!(body["detail"].is_string(), "{path}: {body}");
        assert!(!String::from_utf8_lossy(&r.body).contains(SECRET));
    }
    // Paths with more segments are no route at all.
    for path in ["/bin/../secret", "/bin/sub/inner", "/bin/", "/bin"] {
        let r = raw(&fx.server, "GET", path, &[]);
        assert_eq!(r.status, 404, "{path}");
        assert!(!String::from_utf8_lossy(&r.body).contains(SECRET));
    }
    assert!(
        fx.server
            .log()
            .iter()
            .any(|l| l.contains("symlink that leads out of the directory")),
        "the escaping symlink is logged"
    );
}

#[test]
fn without_a_directory_bin_says_it_is_not_configured() {
    let server = TestServer::start();
    for method in ["GET", "HEAD"] {
        let r = raw(&server, method, "/bin/coder-linux-amd64", &[]);
        assert_eq!(r.status, 404);
        if method == "GET" {
            let body = r.assert_error(
                404,
                "The operator has not configured agent_binaries.dir: this server serves no agent binaries.",
            );
            assert!(
                body["detail"]
                    .as_str()
                    .unwrap()
                    .contains("agent_binaries.dir")
            );
        }
    }
}

#[test]
fn check_config_lists_the_files_with_their_sha256() {
    let dir = tempfile::tempdir().unwrap();
    let binary = contents(5000);
    std::fs::write(dir.path().join("coder-linux-amd64"), &binary).unwrap();
    std::fs::write(dir.path().join("coder-windows-amd64.exe"), b"MZ").unwrap();
    std::fs::write(dir.path().join(".gitkeep"), b"").unwrap();
    std::os::unix::fs::symlink("/etc/hostname", dir.path().join("escape")).unwrap();
    let dir_s = dir.path().to_str().unwrap();
    let sandbox = Sandbox::with_config(&format!("[agent_binaries]\ndir = {dir_s:?}\n"));

    let text = sandbox.cli(&["check-config"]);
    text.assert_success();
    let out = &text.stdout;
    let line = out
        .lines()
        .find(|l| l.contains("coder-linux-amd64"))
        .unwrap_or_else(|| panic!("no listing line:\n{out}"));
    assert!(line.contains("5000 bytes"), "{line}");
    assert!(line.contains(&sha256_hex(&binary)), "{line}");
    assert!(out.contains(&sha256_hex(b"MZ")), "{out}");
    assert!(!out.contains(".gitkeep"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("# warning: escape in agent_binaries.dir is not served")),
        "{out}"
    );
    assert!(out.contains("agent_binaries.dir"), "{out}");

    let json = sandbox.cli(&["check-config", "--output", "json"]).json();
    let b = &json["agent_binaries"];
    assert_eq!(b["dir"], dir_s);
    assert_eq!(b["files"][0]["name"], "coder-linux-amd64");
    assert_eq!(b["files"][0]["size"], 5000);
    assert_eq!(b["files"][0]["sha256"], sha256_hex(&binary));
    assert_eq!(b["files"][1]["name"], "coder-windows-amd64.exe");
    assert_eq!(b["skipped"][0]["name"], "escape");
    assert_eq!(json["keys"]["agent_binaries.dir"]["value"], dir_s);

    // A missing directory: a warning, not a failure.
    let missing = Sandbox::with_config("[agent_binaries]\ndir = \"/nonexistent/appliance-bin\"\n");
    let out = missing.cli(&["check-config"]);
    out.assert_success();
    assert!(
        out.stdout
            .contains("# warning: agent_binaries.dir /nonexistent/appliance-bin cannot be read"),
        "{}",
        out.stdout
    );
    // Unset: said so.
    let none = Sandbox::new().cli(&["check-config"]);
    assert!(
        none.stdout
            .contains("# agent binaries: none served (agent_binaries.dir is not set)")
    );
}

const MANIFEST: &str = r#"
name = "dev"
owner = "admin"

[[resources]]
name = "box"
type = "aws_instance"
instance_id = "i-0123456789abcdef0"

  [[resources.agents]]
  name = "main"
  auth = "token"
  os = "linux"
  arch = "arm64"

  [[resources.agents]]
  name = "cloud"
  auth = "aws-instance-identity"

  [[resources.agents]]
  name = "win"
  os = "windows"
"#;

#[test]
fn apply_prints_the_lines_that_start_each_agent() {
    let sandbox = Sandbox::new();
    sandbox.create_user("admin", "admin");
    let url = "https://appliance.example.lan";
    let path = sandbox.write("dev.toml", MANIFEST);
    let path = path.to_str().unwrap();
    let applied = sandbox
        .cli_env(
            &["workspace", "apply", path, "--output", "json"],
            &[("APPLIANCE_ACCESS_URL", url)],
        )
        .json();

    let main = agent(&applied, "main");
    let token = main["token"].as_str().expect("a token");
    let shell = main["start"]["shell"].as_str().unwrap();
    assert_eq!(
        shell,
        format!(
            "curl -fsSL {url}/bin/coder-linux-arm64 -o coder && chmod +x coder && CODER_AGENT_URL={url} CODER_AGENT_TOKEN={token} ./coder agent"
        )
    );
    let cloud_init = main["start"]["cloud_init"].as_str().unwrap();
    assert!(cloud_init.starts_with("#cloud-config\n"), "{cloud_init}");
    assert!(cloud_init.contains(&format!("CODER_AGENT_TOKEN={token}\n")));
    assert!(cloud_init.contains(&format!("{url}/bin/coder-linux-arm64\n")));

    let cloud = agent(&applied, "cloud");
    assert!(cloud.get("token").is_none());
    let shell = cloud["start"]["shell"].as_str().unwrap();
    assert!(
        shell.ends_with(&format!(
            "CODER_AGENT_URL={url} CODER_AGENT_AUTH=aws-instance-identity CODER_AGENT_NAME=cloud ./coder agent"
        )),
        "{shell}"
    );
    assert!(
        shell.contains("/bin/coder-linux-amd64 "),
        "defaults: {shell}"
    );
    assert!(
        !cloud["start"]["cloud_init"]
            .as_str()
            .unwrap()
            .contains("TOKEN")
    );

    let win = agent(&applied, "win");
    let shell = win["start"]["shell"].as_str().unwrap();
    assert!(
        shell.contains(&format!("-Uri '{url}/bin/coder-windows-amd64.exe'")),
        "{shell}"
    );
    assert!(
        shell.contains(&format!(
            "$env:CODER_AGENT_TOKEN = '{}';",
            win["token"].as_str().unwrap()
        )),
        "{shell}"
    );

    // The text output carries the same lines.
    let out = sandbox.cli_env(
        &["workspace", "apply", path],
        &[("APPLIANCE_ACCESS_URL", url)],
    );
    out.assert_success();
    let text = &out.stdout;
    assert!(
        text.contains("    start it on the machine:\n      curl -fsSL "),
        "{text}"
    );
    assert!(text.contains("      #cloud-config\n"), "{text}");
    assert!(
        text.contains(
            "CODER_AGENT_AUTH=aws-instance-identity CODER_AGENT_NAME=cloud ./coder agent\n"
        ),
        "{text}"
    );
    let token = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("token (shown once): "))
        .expect("a token line");
    assert!(text.contains(&format!("CODER_AGENT_TOKEN={token} ./coder agent")));
}

/// The shell line, run by `sh` with the server's real `/bin/`: it fetches
/// the file and starts it with the agent's environment. Needs `curl`.
#[test]
fn the_shell_line_downloads_and_starts_the_agent() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: no curl on this machine");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A stand-in for Coder's binary: prints what it was started with.
    std::fs::write(
        dir.path().join("coder-linux-amd64"),
        "#!/bin/sh\necho \"args=$* url=$CODER_AGENT_URL token=$CODER_AGENT_TOKEN\"\n",
    )
    .unwrap();
    let server = TestServer::start_with(Options {
        config: format!(
            "[agent_binaries]\ndir = {:?}\n",
            dir.path().to_str().unwrap()
        ),
        ..Options::default()
    });
    let url = server.url("");
    let applied = server
        .cli_env(
            &[
                "workspace",
                "apply",
                server.write("m.toml", MANIFEST).to_str().unwrap(),
                "--output",
                "json",
            ],
            &[("APPLIANCE_ACCESS_URL", &url)],
        )
        .json();
    let main = agent(&applied, "main");
    // The manifest says arm64; the stand-in is served under amd64's name.
    let shell = main["start"]["shell"]
        .as_str()
        .unwrap()
        .replace("coder-linux-arm64", "coder-linux-amd64");
    let machine = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("sh")
        .args(["-c", &shell])
        .current_dir(machine.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{shell}\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.trim(),
        format!(
            "args=agent url={url} token={}",
            main["token"].as_str().unwrap()
        )
    );
    assert!(Path::new(&machine.path().join("coder")).exists());
}
