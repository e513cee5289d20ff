//! Shared helpers for signatures, argument checks and documentation sections.

use datafusion::common::types::{NativeType, logical_int64, logical_string};
use datafusion::logical_expr::{Coercion, DocSection, TypeSignatureClass};

/// An integer argument (any integer type, coerced to Int64).
pub fn integer_arg() -> Coercion {
    Coercion::new_implicit(
        TypeSignatureClass::Native(logical_int64()),
        vec![TypeSignatureClass::Integer],
        NativeType::Int64,
    )
}

/// A string argument (Utf8, LargeUtf8, Utf8View or dictionary of them).
pub fn string_arg() -> Coercion {
    Coercion::new_exact(TypeSignatureClass::Native(logical_string()))
}

/// The documentation section for a function family.
pub const fn doc_section(label: &'static str) -> DocSection {
    DocSection {
        include: true,
        label,
        description: None,
    }
}
