//! `--mount`: docker's csv form of a mount, as the create body's `HostConfig.Mounts`.

use anyhow::{bail, Context, Result};
use bollard::models::{
    Mount, MountBindOptions, MountBindOptionsPropagationEnum, MountTmpfsOptions, MountType,
    MountVolumeOptions,
};

use crate::units::parse_ram;

/// `--mount type=volume,source=data,target=/data,readonly,volume-nocopy,tmpfs-size=1m`, the
/// docker CLI's csv form.
pub fn parse_mount(spec: &str) -> Result<Mount> {
    let mut m = Mount::default();
    let mut typ = "volume";
    for field in spec.split(',').filter(|f| !f.is_empty()) {
        let (k, v) = field.split_once('=').unwrap_or((field, ""));
        let yes = || v.is_empty() || matches!(v, "1" | "true");
        match k.to_ascii_lowercase().as_str() {
            "type" => typ = v,
            "source" | "src" => m.source = Some(v.to_string()),
            "target" | "destination" | "dst" => m.target = Some(v.to_string()),
            "readonly" | "ro" => m.read_only = Some(yes()),
            "volume-nocopy" => {
                m.volume_options
                    .get_or_insert_with(MountVolumeOptions::default)
                    .no_copy = Some(yes())
            }
            "tmpfs-size" => {
                m.tmpfs_options
                    .get_or_insert_with(MountTmpfsOptions::default)
                    .size_bytes = Some(parse_ram(v)?)
            }
            "tmpfs-mode" => {
                m.tmpfs_options
                    .get_or_insert_with(MountTmpfsOptions::default)
                    .mode = Some(
                    i64::from_str_radix(v, 8)
                        .with_context(|| format!("invalid tmpfs-mode {v:?}"))?,
                )
            }
            "bind-propagation" => {
                let p: MountBindOptionsPropagationEnum =
                    serde_json::from_value(serde_json::json!(v))
                        .with_context(|| format!("invalid bind-propagation {v:?}"))?;
                m.bind_options
                    .get_or_insert_with(MountBindOptions::default)
                    .propagation = Some(p)
            }
            // Docker Desktop's file sharing hint: nothing to do on Linux.
            "consistency" => {}
            other => bail!("invalid field '{other}' must be a key=value pair"),
        }
    }
    m.typ = Some(match typ {
        "volume" => MountType::VOLUME,
        "bind" => MountType::BIND,
        "tmpfs" => MountType::TMPFS,
        other => bail!("invalid mount type {other:?}: want volume, bind or tmpfs"),
    });
    if m.target.as_deref().is_none_or(str::is_empty) {
        bail!("invalid argument \"{spec}\" for \"--mount\" flag: target is required");
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_parse_like_docker() {
        let m = parse_mount("type=volume,source=data,target=/data,readonly,volume-nocopy").unwrap();
        assert_eq!(m.typ, Some(MountType::VOLUME));
        assert_eq!(
            (m.source.as_deref(), m.target.as_deref(), m.read_only),
            (Some("data"), Some("/data"), Some(true))
        );
        assert_eq!(m.volume_options.unwrap().no_copy, Some(true));
        let t = parse_mount("type=tmpfs,dst=/t,tmpfs-size=1m,tmpfs-mode=1770").unwrap();
        let o = t.tmpfs_options.unwrap();
        assert_eq!((o.size_bytes, o.mode), (Some(1024 * 1024), Some(0o1770)));
        assert!(parse_mount("type=volume,source=x").is_err());
        assert!(parse_mount("type=nfs,target=/x").is_err());
        assert!(parse_mount("target=/x,bogus=1").is_err());
        let b = parse_mount("type=bind,src=/a,dst=/b,bind-propagation=rslave").unwrap();
        assert_eq!(
            b.bind_options.unwrap().propagation,
            Some(MountBindOptionsPropagationEnum::RSLAVE)
        );
        assert!(parse_mount("type=bind,src=/a,dst=/b,bind-propagation=sideways").is_err());
    }
}
