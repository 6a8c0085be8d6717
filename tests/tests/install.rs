//! The server install: `ops/systemd/`'s units and settings example, and `ops/install.sh`.
//!
//! This machine (and CI) has no running systemd, so no unit is started here. Instead: the units
//! are parsed and held to what the real binary does (its subcommands, its settings, its
//! shutdown deadline), `systemd-analyze verify` checks them when it is installed, and
//! `install.sh` installs into a temporary root, twice.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use berth_tests::{berth_bin, repo_root, TempDir};

const UNITS: [(&str, &str); 2] = [("berth-coordinator", "coordinator"), ("berth-node", "node")];

fn ops() -> PathBuf {
    repo_root().join("ops")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A unit file: section → key → every value given (`Environment=` may repeat).
type Unit = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn parse_unit(text: &str) -> Unit {
    let mut unit = Unit::new();
    let mut section = String::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("line {}: {line:?} is not key=value", n + 1));
        assert!(
            !section.is_empty(),
            "line {}: a key before any section",
            n + 1
        );
        unit.entry(section.clone())
            .or_default()
            .entry(k.trim().to_string())
            .or_default()
            .push(v.trim().to_string());
    }
    unit
}

/// The one value of `section`'s `key`.
fn one<'a>(unit: &'a Unit, name: &str, section: &str, key: &str) -> &'a str {
    let values = unit
        .get(section)
        .and_then(|s| s.get(key))
        .unwrap_or_else(|| panic!("{name}: no {key}= in [{section}]"));
    assert_eq!(values.len(), 1, "{name}: {key}= given more than once");
    &values[0]
}

/// Every value of `section`'s `key`, split on whitespace (`After=a b`, `After=c`).
fn words(unit: &Unit, section: &str, key: &str) -> Vec<String> {
    unit.get(section)
        .and_then(|s| s.get(key))
        .map(|vs| {
            vs.iter()
                .flat_map(|v| v.split_whitespace().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// The settings the real binary knows, as their environment variables: the keys `berth up
/// --help` lists (`node.ingress_http` → `BERTH_NODE__INGRESS_HTTP`).
fn real_settings() -> BTreeSet<String> {
    let out = run(Command::new(berth_bin()).args(["up", "--help"]));
    assert!(out.status.success(), "berth up --help: {out:?}");
    let help = text(&out.stdout);
    let list = help
        .split_once("\nSettings")
        .unwrap_or_else(|| panic!("no settings list in berth up --help:\n{help}"))
        .1;
    let keys: BTreeSet<String> = list
        .lines()
        .skip(1)
        .filter_map(|l| l.strip_prefix("  ")?.split_whitespace().next())
        .filter(|k| {
            k.chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.')
        })
        .map(|k| format!("BERTH_{}", k.to_ascii_uppercase().replace('.', "__")))
        .collect();
    assert!(
        keys.contains("BERTH_REDIS__URL") && keys.contains("BERTH_DATA_DIR") && keys.len() > 15,
        "read the settings of berth up --help: {keys:?}\n{help}"
    );
    keys
}

/// `BERTH_*=value` lines of the settings example, commented out (`#BERTH_…=`) or not.
fn example_settings() -> Vec<(String, String, bool)> {
    read(&ops().join("systemd/berth.env.example"))
        .lines()
        .filter_map(|l| {
            let (active, l) = match l.strip_prefix('#') {
                Some(rest) => (false, rest),
                None => (true, l),
            };
            let (k, v) = l.split_once('=')?;
            (k.starts_with("BERTH_") && !k.contains(' '))
                .then(|| (k.to_string(), v.to_string(), active))
        })
        .collect()
}

/// `SHUTDOWN_DEADLINE` of ops/src/server.rs, in seconds: the units must wait longer.
fn shutdown_deadline_s() -> u64 {
    let src = read(&ops().join("src/server.rs"));
    let marker = "SHUTDOWN_DEADLINE: Duration = Duration::from_secs(";
    let rest = &src[src.find(marker).expect("SHUTDOWN_DEADLINE in server.rs") + marker.len()..];
    rest[..rest.find(')').unwrap()].parse().unwrap()
}

#[test]
fn the_units_run_real_commands_with_real_settings_and_restart_on_failure() {
    let settings = real_settings();
    let deadline = shutdown_deadline_s();
    for (name, role) in UNITS {
        let unit = parse_unit(&read(&ops().join(format!("systemd/{name}.service"))));
        let svc = "Service";

        // The command is the real binary's subcommand, where install.sh puts the binary.
        assert_eq!(
            one(&unit, name, svc, "ExecStart"),
            format!("/usr/local/bin/berth {role}")
        );
        let out = run(Command::new(berth_bin()).args([role, "--help"]));
        assert!(
            out.status.success(),
            "{name}: `berth {role}` is not a command of the binary: {}",
            text(&out.stderr)
        );

        assert_eq!(one(&unit, name, svc, "Restart"), "on-failure", "{name}");
        let restart_s: u64 = one(&unit, name, svc, "RestartSec").parse().unwrap();
        assert!(
            (1..=30).contains(&restart_s),
            "{name}: RestartSec={restart_s}"
        );
        // Restarting never stops for good (a node waits for its Caddy this way).
        assert_eq!(one(&unit, name, "Unit", "StartLimitIntervalSec"), "0");

        // Shutdown as berth does it: SIGTERM to berth alone, SIGKILL only after its deadline.
        assert_eq!(one(&unit, name, svc, "KillSignal"), "SIGTERM", "{name}");
        assert_eq!(one(&unit, name, svc, "KillMode"), "mixed", "{name}");
        let stop_s: u64 = one(&unit, name, svc, "TimeoutStopSec").parse().unwrap();
        assert!(
            stop_s > deadline,
            "{name}: TimeoutStopSec={stop_s} must exceed berth's {deadline} s shutdown deadline"
        );

        // Settings: the file install.sh writes, and defaults that are real settings.
        assert_eq!(
            one(&unit, name, svc, "EnvironmentFile"),
            "/etc/berth/berth.env"
        );
        let env: BTreeMap<String, String> = words(&unit, svc, "Environment")
            .iter()
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_string(), v.to_string())
            })
            .collect();
        for k in env.keys().filter(|k| k.starts_with("BERTH_")) {
            assert!(
                settings.contains(k),
                "{name}: {k} is not a setting of berth"
            );
        }
        // The data dir is the state directory systemd creates for the berth user.
        assert_eq!(
            env.get("BERTH_DATA_DIR").map(String::as_str),
            Some("/var/lib/berth")
        );
        // The journal keeps text, not terminal colours.
        assert_eq!(env.get("NO_COLOR").map(String::as_str), Some("1"));
        assert_eq!(one(&unit, name, svc, "StateDirectory"), "berth");
        assert_eq!(one(&unit, name, svc, "User"), "berth");

        let wants = words(&unit, "Unit", "Wants");
        let after = words(&unit, "Unit", "After");
        for dep in ["network-online.target", "redis-server.service"] {
            assert!(
                after.contains(&dep.to_string()),
                "{name}: After= lacks {dep}"
            );
        }
        assert!(wants.contains(&"network-online.target".to_string()));
        if role == "node" {
            // Docker: wanted and ordered, not required (an engine restart must not stop it),
            // and reachable through the docker group.
            for dep in ["docker.service", "caddy.service"] {
                assert!(
                    wants.contains(&dep.to_string()),
                    "{name}: Wants= lacks {dep}"
                );
                assert!(
                    after.contains(&dep.to_string()),
                    "{name}: After= lacks {dep}"
                );
            }
            assert!(words(&unit, "Unit", "Requires").is_empty());
            assert!(words(&unit, "Unit", "BindsTo").is_empty());
            assert_eq!(one(&unit, name, svc, "SupplementaryGroups"), "docker");
        }
        assert_eq!(one(&unit, name, "Install", "WantedBy"), "multi-user.target");
    }
}

#[test]
fn the_settings_example_names_every_setting_and_the_binary_accepts_it() {
    let settings = real_settings();
    let example = example_settings();
    let named: BTreeSet<String> = example.iter().map(|(k, _, _)| k.clone()).collect();
    assert_eq!(named.len(), example.len(), "a setting is named twice");
    for k in &named {
        assert!(
            settings.contains(k),
            "berth.env.example: {k} is not a setting of berth (berth up --help lists them)"
        );
    }
    // Every setting is there (data_dir is the units' own), so the example is the whole list.
    for k in &settings {
        assert!(
            named.contains(k) || k == "BERTH_DATA_DIR",
            "ops/systemd/berth.env.example lacks {k}: add a line for it (commented out is fine)"
        );
    }
    assert!(example
        .iter()
        .any(|(k, _, active)| k == "BERTH_REDIS__URL" && *active));

    // The binary loads every line, commented or not, with its example value: a client command
    // reads the settings first (they are refused there when a key or a value is wrong), then
    // fails on the address given, which nothing listens on.
    let home = TempDir::with_prefix("berth-env").unwrap();
    let load = |extra: &[(&str, &str)]| {
        let mut cmd = Command::new(berth_bin());
        cmd.args(["apps", "list", "--api", "http://127.0.0.1:1"]);
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("BERTH_")) {
            cmd.env_remove(k);
        }
        cmd.env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path().join("config"))
            .env("XDG_DATA_HOME", home.path().join("data"));
        for (k, v, _) in &example {
            cmd.env(k, v);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let out = run(&mut cmd);
        assert!(!out.status.success());
        text(&out.stderr)
    };
    let err = load(&[]);
    assert!(
        !err.contains("configuration") && err.contains("127.0.0.1:1"),
        "the example's settings are refused: {err}"
    );
    // The same check refuses what is not a setting.
    let err = load(&[("BERTH_NODE__NO_SUCH_SETTING", "1")]);
    assert!(err.contains("invalid configuration"), "{err}");
}

/// `systemd-analyze verify` when it is installed (never installed for this test): the units as
/// systemd reads them, the binary path pointing at the built one.
#[test]
fn systemd_analyze_verifies_the_units_when_it_is_installed() {
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze is not installed: skipping `verify` (the other checks ran)");
        return;
    };
    assert!(out.status.success());
    let dir = TempDir::with_prefix("berth-units").unwrap();
    let verify = |tweak: &dyn Fn(String) -> String| {
        let mut paths = Vec::new();
        for (name, _) in UNITS {
            let unit = read(&ops().join(format!("systemd/{name}.service")))
                .replace("/usr/local/bin/berth", &berth_bin().display().to_string());
            let p = dir.path().join(format!("{name}.service"));
            std::fs::write(&p, tweak(unit)).unwrap();
            paths.push(p);
        }
        let out = run(Command::new("systemd-analyze").arg("verify").args(&paths));
        // Warnings (an unknown key, a bad value) do not change the exit status: any line about
        // our units is a failure.
        let ours: Vec<String> = text(&out.stderr)
            .lines()
            .filter(|l| l.contains("berth-"))
            .map(str::to_string)
            .collect();
        (out.status.success(), ours)
    };
    let (ok, complaints) = verify(&|u| u);
    assert!(ok && complaints.is_empty(), "{complaints:#?}");
    // And it does see a mistake in them.
    let (_, complaints) = verify(&|u| u.replace("KillMode=mixed", "KillMode=mixd"));
    assert!(
        complaints.iter().any(|l| l.contains("mixd")),
        "{complaints:#?}"
    );
}

fn install(root: &Path, args: &[&str]) -> Output {
    run(Command::new("bash")
        .arg(ops().join("install.sh"))
        .arg("--root")
        .arg(root)
        .arg("--bin")
        .arg(berth_bin())
        .args(args))
}

fn same_file(a: &Path, b: &Path) -> bool {
    run(Command::new("cmp").arg("-s").arg(a).arg(b))
        .status
        .success()
}

#[test]
fn install_sh_installs_into_a_root_and_keeps_an_edited_settings_file() {
    let root = TempDir::with_prefix("berth-root").unwrap();
    let r = root.path();
    let out = install(r, &[]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}{}", stdout, text(&out.stderr));
    // It enables nothing; it says how.
    for u in ["berth-coordinator", "berth-node"] {
        assert!(
            stdout.contains(&format!("systemctl enable --now {u}")),
            "{stdout}"
        );
    }
    assert!(
        stdout.contains("journalctl -u berth-coordinator"),
        "{stdout}"
    );

    let bin = r.join("usr/local/bin/berth");
    assert!(same_file(&bin, &berth_bin()));
    let v = run(Command::new(&bin).arg("--version"));
    assert!(v.status.success() && text(&v.stdout).starts_with("berth "));
    for (name, _) in UNITS {
        let dst = r.join(format!("etc/systemd/system/{name}.service"));
        assert!(same_file(
            &dst,
            &ops().join(format!("systemd/{name}.service"))
        ));
    }
    let env = r.join("etc/berth/berth.env");
    let example = ops().join("systemd/berth.env.example");
    assert!(same_file(&env, &example));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&env), 0o600, "the settings may hold secrets");
    assert!(same_file(&r.join("etc/berth/berth.env.example"), &example));
    assert!(r.join("var/lib/berth").is_dir());
    assert_eq!(mode(&r.join("var/lib/berth")), 0o750);

    // Again, after the operator edited the settings and someone edited a unit in place: the
    // settings stay, the unit is replaced (drop-ins are the way to change it), the rest is
    // left as it is.
    let edited = format!("{}BERTH_BASE_DOMAIN=apps.example.com\n", read(&env));
    std::fs::write(&env, &edited).unwrap();
    let node_unit = r.join("etc/systemd/system/berth-node.service");
    std::fs::write(&node_unit, "[Service]\nExecStart=/bin/false\n").unwrap();
    let out = install(r, &[]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}{}", stdout, text(&out.stderr));
    assert_eq!(read(&env), edited, "the second run overwrote the settings");
    assert!(
        stdout.contains(&format!("kept       {}", env.display())),
        "{stdout}"
    );
    assert!(same_file(
        &node_unit,
        &ops().join("systemd/berth-node.service")
    ));
    assert!(stdout.contains(&format!("installed  {}", node_unit.display())));
    assert!(
        stdout.contains(&format!("unchanged  {}", bin.display())),
        "{stdout}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(r.join("usr/local/bin"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["berth"], "no temporary file is left");

    // --enable needs a systemd to talk to, which an install under a root has not.
    let out = install(r, &["--enable", "node"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--enable needs a running systemd"));
    let out = install(r, &["--enable", "web"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("coordinator or node"));
}

#[test]
fn install_sh_refuses_to_install_to_the_system_without_root() {
    let uid = text(&run(Command::new("id").arg("-u")).stdout);
    let mut cmd = if uid.trim() == "0" {
        // As nobody: the same script, no privileges.
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "bash"]);
        c
    } else {
        Command::new("bash")
    };
    let out = run(cmd
        .arg(ops().join("install.sh"))
        .arg("--bin")
        .arg(berth_bin()));
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("installing to / needs root"), "{err}");
}
