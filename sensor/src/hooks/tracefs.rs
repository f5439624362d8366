//! Tracepoint formats from tracefs (`events/<subsystem>/<event>/format`): the event id and
//! the offset and size of every field, which the generic tracepoint program reads by offset.

use std::path::{Path, PathBuf};

/// One field of a tracepoint record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    /// The C declaration without the name (e.g. `const char *`, `unsigned long[6]`).
    pub c_type: String,
    pub offset: u32,
    pub size: u32,
    pub signed: bool,
}

/// A parsed `format` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    pub id: u32,
    /// In record order, the `common_*` fields first (policy argument indexes count them).
    pub fields: Vec<Field>,
}

/// Where tracefs is mounted (the sensor mounts it if nothing is).
pub fn root() -> PathBuf {
    for p in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        if Path::new(p).join("events").is_dir() {
            return PathBuf::from(p);
        }
    }
    PathBuf::from("/sys/kernel/tracing")
}

/// Reads and parses the format of `subsystem/event`; the error says what is missing.
pub fn read(root: &Path, subsystem: &str, event: &str) -> Result<Format, String> {
    if subsystem.contains('/') || event.contains('/') || subsystem.contains("..") {
        return Err(format!("invalid tracepoint name {subsystem}/{event}"));
    }
    let path = root
        .join("events")
        .join(subsystem)
        .join(event)
        .join("format");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "tracepoint {subsystem}/{event} not found ({}: {e})",
            path.display()
        )
    })?;
    parse(&text).map_err(|e| format!("tracepoint {subsystem}/{event}: {e}"))
}

/// Parses the text of a `format` file.
pub fn parse(text: &str) -> Result<Format, String> {
    let mut id = None;
    let mut fields = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("ID:") {
            id = Some(
                v.trim()
                    .parse::<u32>()
                    .map_err(|e| format!("bad ID {v:?}: {e}"))?,
            );
        } else if let Some(rest) = line.strip_prefix("field:") {
            fields.push(parse_field(rest)?);
        }
    }
    Ok(Format {
        id: id.ok_or("no ID line")?,
        fields,
    })
}

fn parse_field(rest: &str) -> Result<Field, String> {
    // "unsigned long args[6];\toffset:16;\tsize:48;\tsigned:0;"
    let mut parts = rest.split(';').map(str::trim);
    let decl = parts.next().unwrap_or_default();
    let mut offset = None;
    let mut size = None;
    let mut signed = false;
    for p in parts {
        if let Some(v) = p.strip_prefix("offset:") {
            offset = v.parse().ok();
        } else if let Some(v) = p.strip_prefix("size:") {
            size = v.parse().ok();
        } else if let Some(v) = p.strip_prefix("signed:") {
            signed = v == "1";
        }
    }
    let split = decl
        .rfind([' ', '*'])
        .ok_or_else(|| format!("bad field declaration {decl:?}"))?;
    let (ty, name) = decl.split_at(split + 1);
    let (name, array) = match name.find('[') {
        Some(i) => (&name[..i], &name[i..]),
        None => (name, ""),
    };
    Ok(Field {
        name: name.to_string(),
        c_type: format!("{}{array}", ty.trim()),
        offset: offset.ok_or_else(|| format!("field {name}: no offset"))?,
        size: size.ok_or_else(|| format!("field {name}: no size"))?,
        signed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SYS_ENTER: &str = "name: sys_enter\nID: 443\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\tfield:long id;\toffset:8;\tsize:8;\tsigned:1;\n\tfield:unsigned long args[6];\toffset:16;\tsize:48;\tsigned:0;\n\nprint fmt: \"NR %ld\", REC->id\n";

    #[test]
    fn parses_raw_syscalls_sys_enter() {
        let f = parse(SYS_ENTER).unwrap();
        assert_eq!(f.id, 443);
        assert_eq!(f.fields.len(), 6);
        assert_eq!(f.fields[4].name, "id");
        assert_eq!(
            (f.fields[4].offset, f.fields[4].size, f.fields[4].signed),
            (8, 8, true)
        );
        assert_eq!(f.fields[5].name, "args");
        assert_eq!(f.fields[5].c_type, "unsigned long[6]");
        assert_eq!(f.fields[0].c_type, "unsigned short");
    }

    #[test]
    fn pointer_fields_keep_their_type() {
        let f = parse("ID: 1\n\tfield:const char * filename;\toffset:24;\tsize:8;\tsigned:0;\n")
            .unwrap();
        assert_eq!(f.fields[0].name, "filename");
        assert_eq!(f.fields[0].c_type, "const char *");
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(parse("no id here").unwrap_err().contains("ID"));
        assert!(parse("ID: x").is_err());
        assert!(
            parse("ID: 1\n\tfield:int x;\tsize:4;\n")
                .unwrap_err()
                .contains("offset")
        );
        assert!(
            read(Path::new("/nonexistent"), "a", "b")
                .unwrap_err()
                .contains("not found")
        );
        assert!(read(Path::new("/"), "../etc", "b").is_err());
    }
}
