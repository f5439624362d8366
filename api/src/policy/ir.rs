//! The policy IR (protobuf `vigil.policy.v1`), generated from `api/proto/vigil/policy/v1/ir.proto`.
//! See docs/policy-ir.md.

#![allow(clippy::all, missing_docs)]

use std::sync::OnceLock;

include!(concat!(env!("OUT_DIR"), "/vigil.policy.v1.rs"));

/// The IR schema version written into every [`PolicyIr`].
pub const IR_VERSION: u32 = 1;

static DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vigil_descriptor.bin"));

fn pool() -> Option<&'static prost_reflect::DescriptorPool> {
    static POOL: OnceLock<Option<prost_reflect::DescriptorPool>> = OnceLock::new();
    POOL.get_or_init(|| prost_reflect::DescriptorPool::decode(DESCRIPTOR_SET).ok())
        .as_ref()
}

/// Render an IR as pretty JSON: proto field names, enum names, 64-bit integers as numbers,
/// default values omitted, fields in proto order. The same IR always gives the same bytes.
pub fn ir_to_json(ir: &PolicyIr) -> String {
    use prost::Message;
    let rendered = pool()
        .and_then(|p| p.get_message_by_name("vigil.policy.v1.PolicyIr"))
        .and_then(|desc| {
            prost_reflect::DynamicMessage::decode(desc, ir.encode_to_vec().as_slice()).ok()
        })
        .and_then(|msg| {
            let opts = prost_reflect::SerializeOptions::new()
                .use_proto_field_name(true)
                .stringify_64_bit_integers(false);
            let mut buf = Vec::new();
            let mut ser = serde_json::Serializer::pretty(&mut buf);
            msg.serialize_with_options(&mut ser, &opts).ok()?;
            String::from_utf8(buf).ok()
        });
    // The descriptor set is compiled into the crate, so rendering cannot fail for a PolicyIr.
    rendered.unwrap_or_else(|| "{}".to_string())
}
