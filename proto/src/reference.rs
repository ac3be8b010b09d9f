//! The API reference (docs/api.md), generated from the contract's own comments: every service,
//! RPC, message, field and enum value, in the order the files declare them. A test fails when
//! docs/api.md is not what the protos say (`IDLINK_BLESS=1 cargo test -p idlink-proto` rewrites it).

use std::{collections::HashMap, fmt::Write};

use prost::Message;
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FileDescriptorProto, FileDescriptorSet, field_descriptor_proto::Label,
    field_descriptor_proto::Type,
};

/// docs/api.md as the contract says it should read.
pub fn api_reference() -> String {
    let set = FileDescriptorSet::decode(crate::FILE_DESCRIPTOR_SET).unwrap_or_default();
    let mut out = String::from(
        "# API reference (`idlink.v1`)\n\nGenerated from the comments of `proto/idlink/v1/*.proto` \
         (`IDLINK_BLESS=1 cargo test -p idlink-proto` regenerates it; a test keeps it current).\n",
    );
    for file in set.file.iter().filter(|f| f.package() == "idlink.v1") {
        let comments = Comments::of(file);
        let _ = writeln!(out, "\n## `{}`", file.name());
        for (s, service) in file.service.iter().enumerate() {
            let _ = writeln!(out, "\n### service `{}`\n{}", service.name(), comments.text(&[6, s as i32]));
            for (m, method) in service.method.iter().enumerate() {
                let stream = |on: bool| if on { "stream " } else { "" };
                let _ = writeln!(
                    out,
                    "- **`{}`**(`{}{}`) → `{}{}`{}",
                    method.name(),
                    stream(method.client_streaming()),
                    short(method.input_type()),
                    stream(method.server_streaming()),
                    short(method.output_type()),
                    comments.inline(&[6, s as i32, 2, m as i32])
                );
            }
        }
        for (e, enumeration) in file.enum_type.iter().enumerate() {
            enum_section(&mut out, &comments, enumeration, &[5, e as i32], enumeration.name());
        }
        for (m, message) in file.message_type.iter().enumerate() {
            message_section(&mut out, &comments, message, &[4, m as i32], message.name());
        }
    }
    out
}

fn message_section(out: &mut String, comments: &Comments, message: &DescriptorProto, path: &[i32], name: &str) {
    let _ = writeln!(out, "\n### message `{name}`\n{}", comments.text(path));
    if !message.field.is_empty() {
        let _ = writeln!(out, "| field | type | # | description |\n| --- | --- | --- | --- |");
    }
    for (f, field) in message.field.iter().enumerate() {
        let repeated = if field.label() == Label::Repeated { "repeated " } else { "" };
        let optional = if field.proto3_optional() { "optional " } else { "" };
        let kind = match field.r#type() {
            Type::Message | Type::Enum => short(field.type_name()).to_owned(),
            other => format!("{other:?}").to_lowercase(),
        };
        let mut at = path.to_vec();
        at.extend([2, f as i32]);
        let _ = writeln!(out, "| `{}` | {optional}{repeated}`{kind}` | {} | {} |", field.name(), field.number(), comments.cell(&at));
    }
    for (n, nested) in message.nested_type.iter().enumerate() {
        let mut at = path.to_vec();
        at.extend([3, n as i32]);
        message_section(out, comments, nested, &at, &format!("{name}.{}", nested.name()));
    }
    for (e, enumeration) in message.enum_type.iter().enumerate() {
        let mut at = path.to_vec();
        at.extend([4, e as i32]);
        enum_section(out, comments, enumeration, &at, &format!("{name}.{}", enumeration.name()));
    }
}

fn enum_section(out: &mut String, comments: &Comments, enumeration: &EnumDescriptorProto, path: &[i32], name: &str) {
    let _ = writeln!(out, "\n### enum `{name}`\n{}", comments.text(path));
    for (v, value) in enumeration.value.iter().enumerate() {
        let mut at = path.to_vec();
        at.extend([2, v as i32]);
        let _ = writeln!(out, "- `{}` = {}{}", value.name(), value.number(), comments.inline(&at));
    }
}

fn short(type_name: &str) -> &str {
    type_name.strip_prefix(".idlink.v1.").or_else(|| type_name.strip_prefix('.')).unwrap_or(type_name)
}

/// A file's comments by the path of what they describe.
struct Comments(HashMap<Vec<i32>, String>);

impl Comments {
    fn of(file: &FileDescriptorProto) -> Self {
        let mut comments = HashMap::new();
        for location in file.source_code_info.iter().flat_map(|info| &info.location) {
            let text = [location.leading_comments(), location.trailing_comments()]
                .iter()
                .flat_map(|c| c.lines())
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            if !text.is_empty() {
                comments.insert(location.path.clone(), text);
            }
        }
        Self(comments)
    }

    fn text(&self, path: &[i32]) -> String {
        self.0.get(path).map(|t| format!("\n{t}\n")).unwrap_or_default()
    }

    fn inline(&self, path: &[i32]) -> String {
        self.0.get(path).map(|t| format!(": {t}")).unwrap_or_default()
    }

    fn cell(&self, path: &[i32]) -> String {
        self.0.get(path).map(|t| t.replace('|', "\\|")).unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    #[test]
    fn the_api_reference_is_what_the_protos_say() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api.md");
        let generated = super::api_reference();
        if std::env::var("IDLINK_BLESS").is_ok_and(|v| v == "1") {
            std::fs::write(path, &generated).unwrap();
        }
        let current = std::fs::read_to_string(path).unwrap_or_default();
        assert!(generated.contains("### service `LinkService`") && generated.contains("| `next_association_available_at` |"));
        assert!(current == generated, "docs/api.md is stale: run IDLINK_BLESS=1 cargo test -p idlink-proto");
    }
}
