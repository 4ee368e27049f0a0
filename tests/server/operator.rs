//! The operator's commands on a running server: top-ups, issuers, the
//! ledger check and backups, over the operator API and the CLI's
//! `--server` mode; and a backup taken mid-burst restoring into a copy
//! whose audit chain and ledger check out.

use std::path::Path;
use std::process::Command;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::*;
use crate::payments::balance;

fn cli(args: &[&str]) -> (bool, String) {
    cli_with(args, &[]).1
}

/// The CLI's exit code, and whether it succeeded with its output, run
/// with `env` set.
fn cli_with(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, (bool, String)) {
    let out = Command::new(env!("CARGO_BIN_EXE_superapp"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code(),
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ),
    )
}

fn root(server: &Server) -> String {
    server.base.trim_end_matches("/api/v1").to_string()
}

async fn operator_post(
    server: &Server,
    token: Option<&str>,
    path: &str,
    body: Value,
) -> (StatusCode, Value) {
    let mut req = crate::common::http_client()
        .post(format!("{}{path}", server.base))
        .json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_commands_work_while_serving() {
    let server = Server::start(&[]);
    let alice = Client::signed_up(&server, "alice").await;
    let _bob = Client::signed_up(&server, "bob").await;
    let token = server.operator_token();
    let token_file = server.data_dir.join("operator.token");
    let token_file = token_file.to_str().unwrap();
    let url = root(&server);

    // A typed --server wins over SUPERAPP_DATA_DIR, serve's setting; typed
    // beside --data-dir, or a typed --data-dir beside SUPERAPP_SERVER, it
    // is a conflict the CLI names instead of picking one.
    let list = ["registry", "list", "--token-file", token_file];
    let elsewhere = [("SUPERAPP_DATA_DIR", "no-such-data-dir")];
    let (_, (ok, out)) = cli_with(&[&list[..], &["--server", &url]].concat(), &elsewhere);
    assert!(ok && out.contains("publishers"), "{out}");
    let both = [
        &list[..],
        &["--server", &url, "--data-dir", "no-such-data-dir"],
    ]
    .concat();
    let (code, (_, out)) = cli_with(&both, &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("give one of them"), "{out}");
    let typed_dir = [&list[..], &["--data-dir", "no-such-data-dir"]].concat();
    let (code, (_, out)) = cli_with(&typed_dir, &[("SUPERAPP_SERVER", &url)]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("SUPERAPP_SERVER is set"), "{out}");

    // Only the operator tops up, and only with an idempotency key.
    let topup = json!({"user": "alice", "amount": 5000, "idempotency_key": "k1"});
    let (status, _) = operator_post(&server, None, "/operator/topups", topup.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = operator_post(
        &server,
        alice.token.as_deref(),
        "/operator/topups",
        topup.clone(),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a user's token is not the operator's"
    );
    let (status, err) = operator_post(
        &server,
        Some(&token),
        "/operator/topups",
        json!({"user": "alice", "amount": 5000}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("idempotency_key"),
        "{err}"
    );
    for _ in 0..2 {
        let (status, done) =
            operator_post(&server, Some(&token), "/operator/topups", topup.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "{done}");
        assert_eq!(done["balance"], 5000, "a retry issues once: {done}");
    }
    let (status, err) = operator_post(
        &server,
        Some(&token),
        "/operator/topups",
        json!({"user": "alice", "amount": 9000, "idempotency_key": "k1"}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    let (status, _) = operator_post(
        &server,
        Some(&token),
        "/operator/topups",
        json!({"user": "nobody", "amount": 1, "idempotency_key": "k2"}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(balance(&alice).await, 5000);
    // The top-up is in alice's access log, in the same transaction.
    let (_, log) = alice.get("/me/access-log").await;
    assert!(
        log["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "ledger.topup"
                && e["details"]["amount"] == "5000"
                && e["details"]["by"] == "operator"),
        "{log}"
    );

    // The CLI against the running server.
    let (ok, out) = cli(&[
        "wallet",
        "topup",
        "bob",
        "700",
        "--idempotency-key",
        "b1",
        "--server",
        &url,
        "--token-file",
        token_file,
    ]);
    assert!(
        ok && out.contains("by EUR 7.00") && out.contains("balance EUR 7.00"),
        "{out}"
    );
    let (ok, out) = cli(&[
        "wallet",
        "check",
        "--server",
        &url,
        "--token-file",
        token_file,
    ]);
    assert!(ok && out.contains("EUR: issued 5700, held 5700"), "{out}");
    let (ok, out) = cli(&["wallet", "check", "--server", &url]);
    assert!(
        !ok && out.contains("operator token"),
        "no token, no check: {out}"
    );

    let tmp = tempfile::tempdir().unwrap();
    let key_file = tmp.path().join("issuer.json");
    let (ok, public_key) = cli(&[
        "issuer",
        "keygen",
        "--id",
        "gov.example",
        "--out",
        key_file.to_str().unwrap(),
    ]);
    assert!(ok, "{public_key}");
    let add = [
        "issuer",
        "add",
        "--id",
        "gov.example",
        "--name",
        "Example Registry",
        "--public-key",
        public_key.trim(),
        "--server",
        &url,
        "--token-file",
        token_file,
    ];
    let (ok, out) = cli(&add);
    assert!(ok && out.contains("registered issuer gov.example"), "{out}");
    let (ok, out) = cli(&add);
    assert!(!ok && out.contains("exists"), "{out}");
    let (_, issuers) = alice.get("/issuers").await;
    assert!(
        issuers.to_string().contains("Example Registry"),
        "{issuers}"
    );
}

/// A backup taken while users move money restores into a copy whose audit
/// chain verifies and whose ledger balances, and a server runs on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_mid_burst_restores_a_consistent_copy() {
    let server = Server::start(&[]);
    let token = server.operator_token();
    let token_file = server.data_dir.join("operator.token");
    let url = root(&server);
    let names: Vec<String> = (0..4).map(|i| format!("user{i}")).collect();
    let mut users = Vec::new();
    for n in &names {
        users.push(Client::signed_up(&server, n).await);
        let (status, done) = operator_post(
            &server,
            Some(&token),
            "/operator/topups",
            json!({"user": n, "amount": 10_000, "idempotency_key": format!("seed-{n}")}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{done}");
    }
    // Transfers in a ring, while the backup is taken.
    let burst: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(i, from)| {
            let from = from.clone();
            let to = names[(i + 1) % names.len()].clone();
            let me = names[i].clone();
            tokio::spawn(async move {
                for k in 0..40 {
                    let (status, body) = from
                        .post(
                            "/wallet/transfers",
                            json!({"to": to, "amount": 7 + k, "currency": "EUR",
                                   "idempotency_key": format!("{me}-{k}"),
                                   "password": format!("{me}-password")}),
                        )
                        .await;
                    assert_eq!(status, StatusCode::CREATED, "{body}");
                }
            })
        })
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("backup.tar");
    let archive_arg = archive.to_str().unwrap().to_string();
    let token_arg = token_file.to_str().unwrap().to_string();
    let url_arg = url.clone();
    let (ok, out) = tokio::task::spawn_blocking(move || {
        cli(&[
            "backup",
            "--server",
            &url_arg,
            "--token-file",
            &token_arg,
            "--out",
            &archive_arg,
        ])
    })
    .await
    .unwrap();
    assert!(ok && out.contains("key files"), "{out}");
    // The archive names the build of the server that wrote it.
    assert!(
        out.contains(&format!(
            "from a server of superapp {}",
            env!("CARGO_PKG_VERSION")
        )) && out.contains(&crate::ops::build_of_checkout()),
        "{out}"
    );
    for t in burst {
        t.await.unwrap();
    }
    // Never over an existing file.
    let (ok, out) = cli(&[
        "backup",
        "--server",
        &url,
        "--token-file",
        token_file.to_str().unwrap(),
        "--out",
        archive.to_str().unwrap(),
    ]);
    assert!(!ok && out.contains("exists"), "{out}");

    let copy = tmp.path().join("restored");
    let (ok, out) = cli(&[
        "restore",
        "--from",
        archive.to_str().unwrap(),
        "--data-dir",
        copy.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("the chain verifies") && out.contains("ledger: ok"),
        "{out}"
    );
    // Not over a directory that holds something.
    let (ok, out) = cli(&[
        "restore",
        "--from",
        archive.to_str().unwrap(),
        "--data-dir",
        copy.to_str().unwrap(),
    ]);
    assert!(!ok && out.contains("not empty"), "{out}");

    // A damaged archive restores nothing.
    let mut bytes = std::fs::read(&archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    let damaged = tmp.path().join("damaged.tar");
    std::fs::write(&damaged, &bytes).unwrap();
    let nowhere = tmp.path().join("nowhere");
    let (ok, out) = cli(&[
        "restore",
        "--from",
        damaged.to_str().unwrap(),
        "--data-dir",
        nowhere.to_str().unwrap(),
    ]);
    assert!(!ok, "{out}");
    assert!(!nowhere.exists(), "a failed restore leaves nothing behind");
    // Nor does a file that is no archive at all; the error names the
    // file, not the bytes tar could not read.
    let noise: Vec<u8> = (0..5000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let random = tmp.path().join("random.bin");
    std::fs::write(&random, &noise).unwrap();
    let (ok, out) = cli(&[
        "restore",
        "--from",
        random.to_str().unwrap(),
        "--data-dir",
        nowhere.to_str().unwrap(),
    ]);
    assert!(
        !ok && out.contains("random.bin is not a superapp backup"),
        "{out}"
    );
    assert!(out.len() < 300 && !out.contains('\u{fffd}'), "{out}");
    assert!(!nowhere.exists());

    // A download cut short is no backup: a server whose answer ends
    // halfway through, with a length that says so, leaves no file.
    let half = std::fs::read(&archive).unwrap()[..middle].to_vec();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cutting = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/x-tar\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                half.len()
            );
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(&half).await;
        }
    });
    let cut = tmp.path().join("cut.tar");
    let (cut_arg, token_arg) = (
        cut.to_str().unwrap().to_string(),
        token_file.to_str().unwrap().to_string(),
    );
    let (ok, out) = tokio::task::spawn_blocking(move || {
        cli(&[
            "backup",
            "--server",
            &cutting,
            "--token-file",
            &token_arg,
            "--out",
            &cut_arg,
        ])
    })
    .await
    .unwrap();
    assert!(!ok && out.contains("damaged or cut short"), "{out}");
    assert!(!cut.exists(), "{out}");

    // An archive whose keys are missing or not the store's restores
    // nothing: a server on it would make new ones and change every
    // user's ids.
    let without = rewrite(&archive, &tmp.path().join("no-secret.tar"), |path| {
        (path != "files/host-secret").then_some(None)
    });
    let short = rewrite(&archive, &tmp.path().join("short-secret.tar"), |path| {
        Some((path == "files/host-secret").then(|| b"short".to_vec()))
    });
    // Nor does it bring what the host makes itself: precompiled native
    // code in its cache, above all, which it would load.
    let planted = tmp.path().join("planted.tar");
    {
        use std::io::Read as _;
        let mut input = tar::Archive::new(std::fs::File::open(&archive).unwrap());
        let mut output = tar::Builder::new(std::fs::File::create(&planted).unwrap());
        for entry in input.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            if path == "backup.json" {
                let mut manifest: Value = serde_json::from_slice(&bytes).unwrap();
                manifest["files"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!("cache/x"));
                bytes = serde_json::to_vec(&manifest).unwrap();
            }
            let mut header = entry.header().clone();
            header.set_size(bytes.len() as u64);
            header.set_cksum();
            output.append(&header, bytes.as_slice()).unwrap();
        }
        let mut header = tar::Header::new_gnu();
        header.set_size(4);
        header.set_mode(0o600);
        header.set_cksum();
        output
            .append_data(&mut header, "files/cache/x", &b"code"[..])
            .unwrap();
        output.into_inner().unwrap();
    }
    for (bad, says) in [
        (&without, "lacks"),
        (&short, "is not the file"),
        (&planted, "which no backup carries"),
    ] {
        let (ok, out) = cli(&[
            "restore",
            "--from",
            bad.to_str().unwrap(),
            "--data-dir",
            nowhere.to_str().unwrap(),
        ]);
        assert!(!ok && out.contains(says), "{out}");
        assert!(!nowhere.exists(), "{out}");
    }
    let staged: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".superapp-restore")
        })
        .collect();
    assert!(staged.is_empty(), "no unpacked copy is left beside it");

    // A server runs on the copy: the same users, the same money in total,
    // the same keys (the copy's operator token is the original's).
    drop(server);
    let restored = Server::start_in(&copy, &[]);
    assert_eq!(restored.operator_token(), token);
    let mut total = 0;
    for n in &names {
        let mut c = Client::new(&restored);
        c.token = Some(c.login(n, &format!("{n}-password")).await);
        total += balance(&c).await;
    }
    assert_eq!(total, 40_000);
    assert!(Path::new(&copy.join("host-secret")).exists());

    // A restore that did not finish leaves its mark, and without its
    // secret the copy's server does not start either (made anew, it would
    // change every user's ids in every app).
    drop(restored);
    let serve = |dir: std::path::PathBuf| {
        tokio::task::spawn_blocking(move || {
            let out = Command::new(env!("CARGO_BIN_EXE_superapp"))
                .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
                .arg(&dir)
                .stdin(std::process::Stdio::null())
                .output()
                .unwrap();
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
    };
    let marker = copy.join(".restore-incomplete");
    std::fs::write(&marker, b"").unwrap();
    let (ok, out) = serve(copy.clone()).await.unwrap();
    assert!(
        !ok && out.contains("a restore that did not finish"),
        "{out}"
    );
    std::fs::remove_file(&marker).unwrap();
    std::fs::remove_file(copy.join("host-secret")).unwrap();
    let (ok, out) = serve(copy.clone()).await.unwrap();
    assert!(!ok && out.contains("host-secret is missing"), "{out}");

    // Into an empty directory that exists already (a mounted volume, say),
    // as into a new one.
    let mounted = tmp.path().join("volume");
    std::fs::create_dir(&mounted).unwrap();
    let (ok, out) = cli(&[
        "restore",
        "--from",
        archive.to_str().unwrap(),
        "--data-dir",
        mounted.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    let mut names: Vec<String> = std::fs::read_dir(&mounted)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        names.contains(&"host-secret".to_string()) && names.contains(&"store".to_string()),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.starts_with('.')),
        "neither the marker nor the unpacking folder is left: {names:?}"
    );
}

/// A copy of the archive `from` at `to`, each entry kept as it is
/// (`Some(None)`), with other bytes (`Some(Some(bytes))`) or left out
/// (`None`), by its path.
fn rewrite(
    from: &Path,
    to: &Path,
    change: impl Fn(&str) -> Option<Option<Vec<u8>>>,
) -> std::path::PathBuf {
    use std::io::Read as _;
    let mut input = tar::Archive::new(std::fs::File::open(from).unwrap());
    let mut output = tar::Builder::new(std::fs::File::create(to).unwrap());
    for entry in input.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let Some(replaced) = change(&path) else {
            continue;
        };
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        let bytes = replaced.unwrap_or(bytes);
        let mut header = entry.header().clone();
        header.set_size(bytes.len() as u64);
        header.set_cksum();
        output.append(&header, bytes.as_slice()).unwrap();
    }
    output.into_inner().unwrap();
    to.to_path_buf()
}

/// The operator rotates the host's signing key on a stopped host: the
/// restarted host serves the new key with the old one listed as retired,
/// and the rotation is in the audit log, whose chain still verifies. A
/// running host's data directory is refused.
#[tokio::test]
async fn the_host_key_rotates_on_a_stopped_host_and_stays_rotated() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server = Server::start_in(&data, &[]);
    let client = Client::new(&server);
    let (_, key) = client.get("/host-key").await;
    let first = key["public_key"].as_str().unwrap().to_string();
    assert_eq!(key["retired"], json!([]), "{key}");

    let dir = data.to_str().unwrap();
    let rotate = |reason: &str| {
        cli(&[
            "keys",
            "rotate-host-key",
            "--data-dir",
            dir,
            "--reason",
            reason,
        ])
    };
    let (ok, out) = rotate("the laptop was lost");
    assert!(!ok, "a running host's data directory: {out}");
    let (ok, out) = rotate("");
    assert!(!ok && out.contains("--reason"), "{out}");
    assert!(server.terminate().success());

    let (ok, out) = rotate("the laptop was lost");
    assert!(ok, "{out}");
    let new = out.lines().next().unwrap().trim().to_string();
    assert!(
        out.contains(&format!("retired the host signing key {first}")),
        "{out}"
    );
    assert_ne!(new, first);

    let server = Server::start_in(&data, &[]);
    let client = Client::new(&server);
    let (_, key) = client.get("/host-key").await;
    assert_eq!(key["public_key"], new, "{key}");
    assert_eq!(key["retired"][0]["public_key"], first, "{key}");
    let mut operator = Client::new(&server);
    operator.token = Some(server.operator_token());
    let (status, page) = operator.get("/audit/entries?limit=1000").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let rotation = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "host.key.rotate")
        .unwrap_or_else(|| panic!("no rotation in {page}"));
    assert_eq!(rotation["details"]["old_key"], first);
    assert_eq!(rotation["details"]["new_key"], new);
    assert_eq!(rotation["details"]["reason"], "the laptop was lost");
    let token_file = server.data_dir.join("operator.token");
    let (ok, out) = cli(&[
        "audit",
        "verify-log",
        "--server",
        &root(&server),
        "--token-file",
        token_file.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
}
