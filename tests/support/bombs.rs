//! Components that are small but take the compiler a long time and much
//! memory: the host must bound what compiling one may take.

/// A component of a few kilobytes whose one function has `n` nested loops
/// and `n` 64-bit locals, each changed in the innermost body and tested
/// by a branch back to every loop: the register allocator's work grows
/// about as n⁴ (n = 200: seconds and about 100 MiB; n = 1000: most of an
/// hour).
pub fn nested_loops(n: usize) -> Vec<u8> {
    let locals: String = (0..n).map(|i| format!("(local $l{i} i64)")).collect();
    let opens: String = (0..n).map(|i| format!("(loop $L{i} ")).collect();
    let sets: String = (0..n)
        .map(|i| format!("(local.set $l{i} (i64.add (local.get $l{i}) (i64.const 1)))"))
        .collect();
    let branches: String = (0..n)
        .map(|i| format!("(br_if $L{i} (i64.lt_u (local.get $l{i}) (i64.const 3)))"))
        .collect();
    let closes = ")".repeat(n);
    let sum: String = (0..n)
        .map(|i| format!("(local.get $l{i})"))
        .collect::<String>()
        + &"(i64.add)".repeat(n - 1);
    let text = format!(
        "(component (core module (memory 1) \
         (func (export \"touch\") {locals} {opens} {sets} {branches} {closes} \
         (i32.const 0) {sum} (i64.store))))"
    );
    wat::parse_str(&text).expect("the bomb is valid WebAssembly")
}
