//! The macro works fully qualified, with nothing imported.
#![no_implicit_prelude]

#[test]
fn envelope_fully_qualified_without_imports() {
    let cluster: ::std::option::Option<&str> = ::std::option::Option::Some("a b]\n");
    let rendered =
        ::std::string::ToString::to_string(&::audit::envelope!(1u32, "r", cluster, ::std::option::Option::Some("b1")));
    ::std::assert_eq!(rendered, "[1 r a?b?? b1]");
    let none: ::std::option::Option<&str> = ::std::option::Option::None;
    let rendered = ::std::string::ToString::to_string(&::audit::envelope!("s", "r", none, none));
    ::std::assert_eq!(rendered, "[s r - -]");
}
