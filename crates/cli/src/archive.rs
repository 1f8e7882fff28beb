//! `load`, `save` and `import`: image archives streamed between local files and the daemon.

use std::io::{IsTerminal, Write};
use std::pin::Pin;

use anyhow::{bail, Context, Result};
use bollard::query_parameters::{CreateImageOptions, ImportImageOptions};
use bollard::Docker;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::pull_push::split_tag;

/// Load an image from a tar archive or STDIN.
#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short, long)]
    pub input: Option<String>,
    /// Suppress the load output
    #[arg(short, long)]
    pub quiet: bool,
}

/// Save one or more images to a tar archive (streamed to STDOUT by default).
#[derive(clap::Args, Debug)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short, long)]
    pub output: Option<String>,
    #[arg(required = true)]
    pub images: Vec<String>,
}

/// Import the contents from a tarball to create a filesystem image.
#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image
    #[arg(short, long)]
    pub change: Vec<String>,
    /// Set commit message for imported image
    #[arg(short, long)]
    pub message: Option<String>,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    /// file|URL|- (STDIN)
    pub file: String,
    /// REPOSITORY[:TAG]
    pub reference: Option<String>,
}

type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// Reads a local file, or stdin for `-`/`None`, as a stream of chunks.
async fn source(path: Option<&str>) -> Result<ByteStream> {
    let reader: Pin<Box<dyn AsyncRead + Send>> = match path {
        None | Some("-") => Box::pin(tokio::io::stdin()),
        Some(p) => Box::pin(
            tokio::fs::File::open(p)
                .await
                .with_context(|| format!("open {p}"))?,
        ),
    };
    Ok(Box::pin(futures::stream::unfold(
        reader,
        |mut r| async move {
            let mut buf = vec![0u8; 256 * 1024];
            match r.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(Bytes::from(buf)), r))
                }
                Err(e) => Some((Err(e), r)),
            }
        },
    )))
}

pub async fn load(d: &Docker, a: LoadArgs) -> Result<i32> {
    if a.input.is_none() && std::io::stdin().is_terminal() {
        bail!("requested load from stdin, but stdin is empty");
    }
    let body = source(a.input.as_deref()).await?;
    let opts = ImportImageOptions {
        quiet: a.quiet,
        ..Default::default()
    };
    let mut stream = d.import_image_stream(opts, body, None);
    while let Some(msg) = stream.next().await {
        let msg = msg?;
        if a.quiet {
            continue;
        }
        if let Some(s) = msg.stream {
            print!("{s}");
        } else if let Some(s) = msg.status {
            println!("{s}");
        }
    }
    Ok(0)
}

pub async fn save(d: &Docker, a: SaveArgs) -> Result<i32> {
    if a.output.is_none() && std::io::stdout().is_terminal() {
        bail!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
    }
    let names: Vec<&str> = a.images.iter().map(String::as_str).collect();
    let mut stream = d.export_images(&names);
    match &a.output {
        Some(path) => {
            // Written beside the target and renamed at the end, so a failed save leaves nothing.
            let tmp = format!("{path}.tmp-{}", std::process::id());
            let result = async {
                let mut f = tokio::fs::File::create(&tmp)
                    .await
                    .with_context(|| format!("create {tmp}"))?;
                while let Some(chunk) = stream.next().await {
                    f.write_all(&chunk?).await?;
                }
                f.sync_all().await?;
                tokio::fs::rename(&tmp, path)
                    .await
                    .with_context(|| format!("rename {tmp} to {path}"))?;
                anyhow::Ok(())
            }
            .await;
            if result.is_err() {
                let _ = tokio::fs::remove_file(&tmp).await;
            }
            result?;
        }
        None => {
            let mut out = std::io::stdout().lock();
            while let Some(chunk) = stream.next().await {
                out.write_all(&chunk?)?;
            }
            out.flush()?;
        }
    }
    Ok(0)
}

pub async fn import(d: &Docker, a: ImportArgs) -> Result<i32> {
    let (repo, tag) = match &a.reference {
        Some(r) => {
            let (n, t) = split_tag(r);
            (Some(n.to_string()), t.map(str::to_string))
        }
        None => (None, None),
    };
    let url = a.file.starts_with("http://") || a.file.starts_with("https://");
    let opts = CreateImageOptions {
        from_src: Some(if url { a.file.clone() } else { "-".into() }),
        repo,
        tag,
        message: a.message.clone(),
        changes: a.change.clone(),
        platform: a.platform.clone().unwrap_or_default(),
        ..Default::default()
    };
    let body = if url {
        None
    } else {
        if a.file == "-" && std::io::stdin().is_terminal() {
            bail!("import from stdin needs a tarball piped in");
        }
        Some(bollard::body_try_stream(source(Some(&a.file)).await?))
    };
    let mut stream = d.create_image(Some(opts), body, None);
    while let Some(msg) = stream.next().await {
        if let Some(s) = msg?.status {
            println!("{s}");
        }
    }
    Ok(0)
}
