//! How an operator starts Coder's agent on a machine: the one shell line
//! (download the binary from this server's `/bin/`, then `coder agent` with
//! `CODER_AGENT_URL` and the token, or `CODER_AGENT_AUTH` and
//! `CODER_AGENT_NAME` for instance identity) and the same as cloud-init user
//! data. `workspace apply` prints them with the real token; the dashboard
//! shows them with a `$CODER_AGENT_TOKEN` placeholder (tokens are stored
//! hashed, so only apply knows them).
//!
//! The binary is `coder-<os>-<arch>` (`.exe` on Windows), as coderd names the
//! files it serves at `/bin/`. Linux and macOS get a POSIX shell line;
//! Windows gets a PowerShell line that saves the agent as `sshd.exe`, as
//! Coder's own Windows bootstrap does (VS Code Remote wants an `sshd` parent).
//! User data: Linux gets `#cloud-config` installing a systemd unit (restarted
//! when it stops; the binary fetched afresh at each start); macOS a `#!/bin/sh`
//! script; Windows a cloudbase-init `#ps1_sysnative` script.
//!
//! Every value is quoted for where it lands (shell, PowerShell, a systemd
//! environment file or command line); values made only of safe characters
//! are left bare, so the usual lines read plainly.
//!
//! Pure: no I/O, no clock.

use crate::manifest::AgentAuth;

/// What the start lines of one agent depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentStart<'a> {
    /// The agent's name (`CODER_AGENT_NAME` for instance identity).
    pub name: &'a str,
    pub auth: AgentAuth,
    /// `linux`, `darwin` or `windows` (the manifest's `os`).
    pub os: &'a str,
    /// e.g. `amd64`, `arm64`, `armv7` (the manifest's `arch`).
    pub arch: &'a str,
    /// The agent's token, when known (only `workspace apply` knows it); for
    /// a token agent without one, the lines carry [`TOKEN_PLACEHOLDER`].
    pub token: Option<&'a str>,
}

/// The start lines of one agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartLines {
    /// One line for a shell on the machine (PowerShell on Windows).
    pub shell: String,
    /// User data for the machine's first boot (cloud-init, or its Windows
    /// and macOS counterparts): ends with a newline.
    pub cloud_init: String,
}

/// Stands for the token where it is not known: the shell variable the
/// operator sets first (or replaces by hand).
pub const TOKEN_PLACEHOLDER: &str = "$CODER_AGENT_TOKEN";

/// Where the user data installs the agent (Linux, macOS), and the Linux
/// environment file and systemd unit.
const INSTALLED_BINARY: &str = "/usr/local/bin/coder";
const LINUX_ENV_FILE: &str = "/etc/coder-agent.env";
const LINUX_UNIT: &str = "/etc/systemd/system/coder-agent.service";

/// The file name appliance serves the agent's binary under.
pub fn binary_name(os: &str, arch: &str) -> String {
    if os == "windows" {
        format!("coder-{os}-{arch}.exe")
    } else {
        format!("coder-{os}-{arch}")
    }
}

/// Where the agent downloads its binary: `{access_url}/bin/{binary_name}`.
pub fn binary_url(access_url: &str, os: &str, arch: &str) -> String {
    format!(
        "{}/bin/{}",
        access_url.trim_end_matches('/'),
        binary_name(os, arch)
    )
}

/// The agent's environment, in order: `CODER_AGENT_URL`, then the token or
/// the instance-identity pair. A value of `None` is the token placeholder.
fn environment<'a>(access_url: &'a str, agent: &AgentStart<'a>) -> Vec<(&'static str, Value<'a>)> {
    let mut env = vec![("CODER_AGENT_URL", Value::Text(access_url))];
    match agent.auth {
        AgentAuth::Token => env.push((
            "CODER_AGENT_TOKEN",
            agent.token.map_or(Value::TokenPlaceholder, Value::Text),
        )),
        cloud => {
            env.push(("CODER_AGENT_AUTH", Value::Text(cloud.as_str())));
            env.push(("CODER_AGENT_NAME", Value::Text(agent.name)));
        }
    }
    env
}

/// A value of the agent's environment.
#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Text(&'a str),
    /// The token is not known: [`TOKEN_PLACEHOLDER`].
    TokenPlaceholder,
}

/// Both start lines of `agent`, for a server reached at `access_url`.
pub fn lines(access_url: &str, agent: &AgentStart<'_>) -> StartLines {
    let access_url = access_url.trim_end_matches('/');
    let url = binary_url(access_url, agent.os, agent.arch);
    let env = environment(access_url, agent);
    match agent.os {
        "windows" => StartLines {
            shell: powershell_line(&url, &env, "& \"$env:TEMP\\sshd.exe\" agent"),
            cloud_init: format!(
                "#ps1_sysnative\n{}\n",
                powershell_line(
                    &url,
                    &env,
                    "Start-Process -FilePath \"$env:TEMP\\sshd.exe\" -ArgumentList agent"
                )
            ),
        },
        "darwin" => StartLines {
            shell: posix_line(&url, "coder", &env, "./coder agent"),
            cloud_init: format!(
                "#!/bin/sh\nmkdir -p /usr/local/bin\n{} &\n",
                posix_line(
                    &url,
                    INSTALLED_BINARY,
                    &env,
                    &format!("nohup {INSTALLED_BINARY} agent >/var/log/coder-agent.log 2>&1")
                )
            ),
        },
        _ => StartLines {
            shell: posix_line(&url, "coder", &env, "./coder agent"),
            cloud_init: linux_cloud_config(&url, &env),
        },
    }
}

/// `curl -fsSL URL -o FILE && chmod +x FILE && ENV... RUN`.
fn posix_line(url: &str, file: &str, env: &[(&str, Value<'_>)], run: &str) -> String {
    let file = sh_quote(file);
    let mut line = format!(
        "curl -fsSL {} -o {file} && chmod +x {file} &&",
        sh_quote(url)
    );
    for (key, value) in env {
        let value = match value {
            Value::Text(v) => sh_quote(v),
            Value::TokenPlaceholder => format!("\"{TOKEN_PLACEHOLDER}\""),
        };
        line.push_str(&format!(" {key}={value}"));
    }
    line.push(' ');
    line.push_str(run);
    line
}

/// The PowerShell counterpart of [`posix_line`]: download to
/// `$env:TEMP\sshd.exe`, set the environment, then `run`.
fn powershell_line(url: &str, env: &[(&str, Value<'_>)], run: &str) -> String {
    let mut line = format!(
        "$ProgressPreference = 'SilentlyContinue'; Invoke-WebRequest -Uri {} -OutFile \"$env:TEMP\\sshd.exe\";",
        ps_quote(url)
    );
    for (key, value) in env {
        let value = match value {
            Value::Text(v) => ps_quote(v),
            // PowerShell's own variable of that name.
            Value::TokenPlaceholder => TOKEN_PLACEHOLDER.to_owned(),
        };
        line.push_str(&format!(" $env:{key} = {value};"));
    }
    line.push(' ');
    line.push_str(run);
    line
}

/// `#cloud-config` for Linux: an environment file (0600: it holds the
/// token), a systemd unit that fetches the binary and runs `coder agent`,
/// restarted whenever it stops, and `runcmd` enabling it. A failed fetch
/// (`-`: not fatal) starts the copy already there; with none, the start
/// fails and is retried 10 s later. Every value sits in
/// a YAML block scalar, so only systemd's quoting applies.
fn linux_cloud_config(url: &str, env: &[(&str, Value<'_>)]) -> String {
    let mut env_file = String::new();
    for (key, value) in env {
        let value = match value {
            Value::Text(v) => systemd_env_quote(v),
            Value::TokenPlaceholder => TOKEN_PLACEHOLDER.to_owned(),
        };
        env_file.push_str(&format!("      {key}={value}\n"));
    }
    format!(
        "#cloud-config
write_files:
  - path: {LINUX_ENV_FILE}
    permissions: \"0600\"
    content: |
{env_file}  - path: {LINUX_UNIT}
    permissions: \"0644\"
    content: |
      [Unit]
      Description=Coder agent
      Wants=network-online.target
      After=network-online.target
      StartLimitIntervalSec=0

      [Service]
      EnvironmentFile={LINUX_ENV_FILE}
      ExecStartPre=-/usr/bin/curl -fsSL -o {INSTALLED_BINARY} {}
      ExecStartPre=-/bin/chmod 0755 {INSTALLED_BINARY}
      ExecStart={INSTALLED_BINARY} agent
      Restart=always
      RestartSec=10

      [Install]
      WantedBy=multi-user.target
runcmd:
  - [systemctl, daemon-reload]
  - [systemctl, enable, --now, coder-agent.service]
",
        systemd_exec_quote(url)
    )
}

/// Whether `c` needs no quoting in any of the languages below.
fn is_plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c)
}

/// A word for a POSIX shell: bare when made only of safe characters,
/// otherwise in single quotes (a `'` written as `'\''`).
pub fn sh_quote(value: &str) -> String {
    if !value.is_empty() && value.chars().all(is_plain) {
        return value.to_owned();
    }
    format!("'{}'", value.replace('\'', "'\\''"))
}

/// A PowerShell string literal: always single-quoted (no expansion inside),
/// each `'` doubled; PowerShell also ends such a string at the typographic
/// single quotes, which are doubled as well.
pub fn ps_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}') {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// A value in a systemd `EnvironmentFile`: bare when plain, otherwise in
/// double quotes with `\`, `"`, `$` and `` ` `` escaped (the file is read
/// with shell-like quoting; nothing is expanded).
fn systemd_env_quote(value: &str) -> String {
    if !value.is_empty() && value.chars().all(is_plain) {
        return value.to_owned();
    }
    let mut out = String::from("\"");
    for c in value.chars() {
        if matches!(c, '\\' | '"' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// One argument of a systemd `Exec*=` line: `%` and `$` doubled (systemd
/// expands specifiers and variables there), then double-quoted when it holds
/// anything but plain characters.
fn systemd_exec_quote(value: &str) -> String {
    let escaped = value.replace('%', "%%").replace('$', "$$");
    if !value.is_empty() && value.chars().all(is_plain) {
        return escaped;
    }
    let mut out = String::from("\"");
    for c in escaped.chars() {
        if matches!(c, '\\' | '"') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "http://appliance.lan:3000";
    const TOKEN: &str = "9d1c6f0e-3a5b-4c1d-8e2f-0a1b2c3d4e5f";

    fn agent(
        auth: AgentAuth,
        os: &'static str,
        token: Option<&'static str>,
    ) -> AgentStart<'static> {
        AgentStart {
            name: "main",
            auth,
            os,
            arch: "amd64",
            token,
        }
    }

    /// Splits a POSIX shell line into words as `sh` would, for the quoting
    /// used here (single quotes, `'\''`, double quotes around a variable).
    fn sh_words(line: &str) -> Vec<String> {
        let mut words = Vec::new();
        let mut word = String::new();
        let mut in_word = false;
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                ' ' => {
                    if in_word {
                        words.push(std::mem::take(&mut word));
                        in_word = false;
                    }
                }
                '\'' => {
                    in_word = true;
                    for c in chars.by_ref() {
                        if c == '\'' {
                            break;
                        }
                        word.push(c);
                    }
                }
                '\\' => {
                    in_word = true;
                    word.extend(chars.next());
                }
                '"' => {
                    in_word = true;
                    for c in chars.by_ref() {
                        if c == '"' {
                            break;
                        }
                        word.push(c);
                    }
                }
                c => {
                    in_word = true;
                    word.push(c);
                }
            }
        }
        if in_word {
            words.push(word);
        }
        words
    }

    #[test]
    fn sh_quote_leaves_plain_words_bare_and_quotes_the_rest() {
        assert_eq!(
            sh_quote("http://h:3000/bin/coder-linux-amd64"),
            "http://h:3000/bin/coder-linux-amd64"
        );
        assert_eq!(sh_quote(TOKEN), TOKEN);
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
        assert_eq!(sh_quote("$(reboot)"), "'$(reboot)'");
        assert_eq!(
            sh_quote("a;b|c&d`e`\"f\"\\g*?~#!\n"),
            "'a;b|c&d`e`\"f\"\\g*?~#!\n'"
        );
        for hostile in ["it's", "'", "''", "a'b'c", "$HOME", "\\'", " ; rm -rf / ; "] {
            assert_eq!(
                sh_words(&sh_quote(hostile)),
                vec![hostile.to_owned()],
                "{hostile:?}"
            );
        }
    }

    #[test]
    fn ps_quote_doubles_single_quotes() {
        assert_eq!(ps_quote("http://h:3000"), "'http://h:3000'");
        assert_eq!(ps_quote("it's"), "'it''s'");
        assert_eq!(ps_quote("$env:X"), "'$env:X'");
        assert_eq!(ps_quote("a\u{2019}b"), "'a\u{2019}\u{2019}b'");
        assert_eq!(ps_quote(""), "''");
    }

    #[test]
    fn systemd_quoting() {
        assert_eq!(systemd_env_quote(URL), URL);
        assert_eq!(systemd_env_quote("a b"), "\"a b\"");
        assert_eq!(systemd_env_quote("a\"$`\\b"), "\"a\\\"\\$\\`\\\\b\"");
        assert_eq!(systemd_exec_quote("http://h/a%20b"), "http://h/a%%20b");
        assert_eq!(systemd_exec_quote("http://h/$x y"), "\"http://h/$$x y\"");
        assert_eq!(systemd_exec_quote("a\"b"), "\"a\\\"b\"");
    }

    #[test]
    fn binary_names_follow_coderd() {
        assert_eq!(binary_name("linux", "amd64"), "coder-linux-amd64");
        assert_eq!(binary_name("darwin", "arm64"), "coder-darwin-arm64");
        assert_eq!(binary_name("linux", "armv7"), "coder-linux-armv7");
        assert_eq!(binary_name("windows", "amd64"), "coder-windows-amd64.exe");
        assert_eq!(
            binary_url("https://coder.example.com/", "linux", "arm64"),
            "https://coder.example.com/bin/coder-linux-arm64"
        );
    }

    #[test]
    fn a_token_agent_gets_url_and_token() {
        let l = lines(URL, &agent(AgentAuth::Token, "linux", Some(TOKEN)));
        assert_eq!(
            l.shell,
            format!(
                "curl -fsSL {URL}/bin/coder-linux-amd64 -o coder && chmod +x coder && CODER_AGENT_URL={URL} CODER_AGENT_TOKEN={TOKEN} ./coder agent"
            )
        );
        assert!(!l.shell.contains("CODER_AGENT_AUTH"));
        assert!(!l.shell.contains("CODER_AGENT_NAME"));
        let words = sh_words(&l.shell);
        assert!(words.contains(&format!("CODER_AGENT_TOKEN={TOKEN}")));
        assert!(l.cloud_init.starts_with("#cloud-config\n"));
        assert!(
            l.cloud_init
                .contains(&format!("      CODER_AGENT_URL={URL}\n"))
        );
        assert!(
            l.cloud_init
                .contains(&format!("      CODER_AGENT_TOKEN={TOKEN}\n"))
        );
        assert!(l.cloud_init.contains(&format!(
            "ExecStartPre=-/usr/bin/curl -fsSL -o /usr/local/bin/coder {URL}/bin/coder-linux-amd64\n"
        )));
        assert!(
            l.cloud_init
                .contains("ExecStart=/usr/local/bin/coder agent\n")
        );
        assert!(l.cloud_init.ends_with("coder-agent.service]\n"));
    }

    #[test]
    fn instance_identity_agents_get_auth_and_name_and_no_token() {
        for (auth, env) in [
            (AgentAuth::AwsInstanceIdentity, "aws-instance-identity"),
            (AgentAuth::AzureInstanceIdentity, "azure-instance-identity"),
            (
                AgentAuth::GoogleInstanceIdentity,
                "google-instance-identity",
            ),
        ] {
            // A token, even if given, is not what such an agent uses.
            let l = lines(URL, &agent(auth, "linux", Some(TOKEN)));
            assert_eq!(
                l.shell,
                format!(
                    "curl -fsSL {URL}/bin/coder-linux-amd64 -o coder && chmod +x coder && CODER_AGENT_URL={URL} CODER_AGENT_AUTH={env} CODER_AGENT_NAME=main ./coder agent"
                )
            );
            assert!(!l.shell.contains("TOKEN"));
            assert!(!l.cloud_init.contains("TOKEN"));
            assert!(
                l.cloud_init
                    .contains(&format!("      CODER_AGENT_AUTH={env}\n"))
            );
            assert!(l.cloud_init.contains("      CODER_AGENT_NAME=main\n"));
        }
    }

    #[test]
    fn an_unknown_token_is_a_placeholder() {
        let l = lines(URL, &agent(AgentAuth::Token, "linux", None));
        assert!(
            l.shell
                .contains("CODER_AGENT_TOKEN=\"$CODER_AGENT_TOKEN\" ./coder agent"),
            "{}",
            l.shell
        );
        assert!(
            l.cloud_init
                .contains("      CODER_AGENT_TOKEN=$CODER_AGENT_TOKEN\n")
        );
        let w = lines(URL, &agent(AgentAuth::Token, "windows", None));
        assert!(
            w.shell
                .contains("$env:CODER_AGENT_TOKEN = $CODER_AGENT_TOKEN;"),
            "{}",
            w.shell
        );
    }

    #[test]
    fn windows_gets_powershell_and_the_exe() {
        let l = lines(URL, &agent(AgentAuth::Token, "windows", Some(TOKEN)));
        assert_eq!(
            l.shell,
            format!(
                "$ProgressPreference = 'SilentlyContinue'; Invoke-WebRequest -Uri '{URL}/bin/coder-windows-amd64.exe' -OutFile \"$env:TEMP\\sshd.exe\"; $env:CODER_AGENT_URL = '{URL}'; $env:CODER_AGENT_TOKEN = '{TOKEN}'; & \"$env:TEMP\\sshd.exe\" agent"
            )
        );
        assert!(l.cloud_init.starts_with("#ps1_sysnative\n"));
        assert!(
            l.cloud_init
                .contains("Start-Process -FilePath \"$env:TEMP\\sshd.exe\" -ArgumentList agent\n")
        );
        let aws = lines(URL, &agent(AgentAuth::AwsInstanceIdentity, "windows", None));
        assert!(aws.shell.contains(
            "$env:CODER_AGENT_AUTH = 'aws-instance-identity'; $env:CODER_AGENT_NAME = 'main';"
        ));
    }

    #[test]
    fn darwin_gets_the_shell_line_and_a_script() {
        let mut a = agent(AgentAuth::Token, "darwin", Some(TOKEN));
        a.arch = "arm64";
        let l = lines(URL, &a);
        assert!(l.shell.starts_with(&format!(
            "curl -fsSL {URL}/bin/coder-darwin-arm64 -o coder "
        )));
        assert!(
            l.cloud_init
                .starts_with("#!/bin/sh\nmkdir -p /usr/local/bin\ncurl -fsSL ")
        );
        assert!(
            l.cloud_init
                .ends_with("nohup /usr/local/bin/coder agent >/var/log/coder-agent.log 2>&1 &\n")
        );
    }

    #[test]
    fn odd_values_are_quoted_everywhere() {
        // Names, URLs and tokens are plain in practice; quoting must hold anyway.
        let url = "https://example.com/a b/it's";
        let a = AgentStart {
            name: "we'ird name",
            auth: AgentAuth::AwsInstanceIdentity,
            os: "linux",
            arch: "amd64",
            token: None,
        };
        let l = lines(url, &a);
        let words = sh_words(&l.shell);
        assert_eq!(words[2], format!("{url}/bin/coder-linux-amd64"));
        assert!(
            words.contains(&format!("CODER_AGENT_URL={url}")),
            "{words:?}"
        );
        assert!(
            words.contains(&"CODER_AGENT_NAME=we'ird name".to_owned()),
            "{words:?}"
        );
        assert!(
            l.cloud_init
                .contains("      CODER_AGENT_NAME=\"we'ird name\"\n")
        );
        assert!(l.cloud_init.contains(
            "ExecStartPre=-/usr/bin/curl -fsSL -o /usr/local/bin/coder \"https://example.com/a b/it's/bin/coder-linux-amd64\"\n"
        ));
        let w = lines(url, &AgentStart { os: "windows", ..a });
        assert!(w.shell.contains("$env:CODER_AGENT_NAME = 'we''ird name';"));
    }

    #[test]
    fn a_trailing_slash_on_the_access_url_is_dropped() {
        let l = lines(
            "http://h:3000/",
            &agent(AgentAuth::Token, "linux", Some(TOKEN)),
        );
        assert!(
            l.shell
                .starts_with("curl -fsSL http://h:3000/bin/coder-linux-amd64 ")
        );
        assert!(l.shell.contains("CODER_AGENT_URL=http://h:3000 "));
    }
}
