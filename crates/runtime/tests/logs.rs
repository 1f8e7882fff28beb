//! json-file logs: rotation and the reader.

mod common;

use std::time::Duration;

use common::Env;
use futures::StreamExt;
use runtime::logs::{self, ReadOptions, Stream};

#[tokio::test]
async fn rotation_keeps_files_under_max_size() {
    require_root!();
    let env = Env::new();
    let id = env.unique_id("rotate");
    let opts = env.options(
        &id,
        &["sh", "-c", "for i in $(seq 1 2000); do echo line $i; done"],
    );
    let mut req = env.request(&id, &opts);
    req.log = Some(runtime::LogConfig {
        path: env.log_path(&id),
        max_size: 10_000,
        max_files: 3,
    });
    let shim = env.rt.start(req).await.unwrap();
    assert_eq!(common::wait(&shim).await.code, 0);
    let path = env.log_path(&id);
    let mut files = vec![path.clone()];
    for i in 1..3 {
        let mut p = path.clone().into_os_string();
        p.push(format!(".{i}"));
        files.push(p.into());
    }
    for f in &files {
        let len = std::fs::metadata(f).unwrap().len();
        assert!(len <= 10_000, "{}: {len}", f.display());
    }
    let mut p3 = path.clone().into_os_string();
    p3.push(".3");
    assert!(!std::path::Path::new(&p3).exists());

    // The reader returns the retained lines in order, ending with the last one.
    let entries: Vec<_> = logs::read(&path, ReadOptions::default()).collect().await;
    let lines: Vec<String> = entries
        .into_iter()
        .map(|e| String::from_utf8(e.unwrap().bytes.to_vec()).unwrap())
        .collect();
    assert_eq!(lines.last().unwrap(), "line 2000\n");
    let n: Vec<u32> = lines
        .iter()
        .map(|l| l[5..l.len() - 1].parse().unwrap())
        .collect();
    assert!(n.windows(2).all(|w| w[1] == w[0] + 1));

    let tail: Vec<_> = logs::read(
        &path,
        ReadOptions {
            tail: Some(2),
            ..Default::default()
        },
    )
    .collect()
    .await;
    assert_eq!(tail.len(), 2);
    assert_eq!(&tail[1].as_ref().unwrap().bytes[..], b"line 2000\n");
}

#[tokio::test]
async fn follow_until_exit() {
    require_root!();
    let env = Env::new();
    let id = env.unique_id("follow");
    let opts = env.options(&id, &["sh", "-c", "echo a; echo b >&2; sleep 1; echo c"]);
    let shim = env.rt.start(env.request(&id, &opts)).await.unwrap();
    let waiter = shim.clone();
    let stop = async move {
        let _ = waiter.wait().await;
    };
    let opts = ReadOptions {
        follow: true,
        ..Default::default()
    };
    let entries: Vec<_> = tokio::time::timeout(
        Duration::from_secs(20),
        logs::read_until(&env.log_path(&id), opts, stop).collect::<Vec<_>>(),
    )
    .await
    .expect("follow ended");
    let got: Vec<(Stream, String)> = entries
        .into_iter()
        .map(|e| {
            let e = e.unwrap();
            (e.stream, String::from_utf8(e.bytes.to_vec()).unwrap())
        })
        .collect();
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got.contains(&(Stream::Stderr, "b\n".into())));
    assert_eq!(got[2], (Stream::Stdout, "c\n".into()));

    let only_err: Vec<_> = logs::read(
        &env.log_path(&id),
        ReadOptions {
            stdout: false,
            ..Default::default()
        },
    )
    .collect()
    .await;
    assert_eq!(only_err.len(), 1);
}
