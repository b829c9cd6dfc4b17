//! Byte views of the wire structs, checked at compile time: the one place where a
//! struct becomes bytes (to send or store it) and bytes become a struct (to read it).
//!
//! [`plain!`] declares a wire struct `repr(C)` and implements [`Plain`] for it only
//! when the compiler agrees that it has no padding (the sizes of its fields add up to
//! its size) and that every field is itself [`Plain`] (integers, arrays of them, other
//! plain structs): so every byte of a value is initialized (its bytes can be viewed)
//! and every bit pattern is a value (it can be read back from any bytes).

/// A type without padding whose every bit pattern is a valid value.
///
/// # Safety
/// Implemented by [`plain!`] (which checks both properties at compile time) and here for
/// the fixed-size integers and arrays of plain values; implement it in no other way.
pub unsafe trait Plain: Copy + 'static {
    /// The value's bytes (native, little-endian on x86-64).
    #[inline]
    fn as_bytes(&self) -> &[u8] {
        // SAFETY: Plain types have no padding, so all size_of::<Self>() bytes of a value
        // are initialized; the slice borrows the value.
        unsafe {
            core::slice::from_raw_parts((self as *const Self).cast::<u8>(), size_of::<Self>())
        }
    }

    /// The value in the first `size_of::<Self>()` bytes of `b` (any alignment); None when
    /// `b` is shorter.
    #[inline]
    fn read_from(b: &[u8]) -> Option<Self> {
        let b = b.get(..size_of::<Self>())?;
        // SAFETY: the length was checked, read_unaligned has no alignment requirement,
        // and every bit pattern is a valid Self.
        Some(unsafe { core::ptr::read_unaligned(b.as_ptr().cast::<Self>()) })
    }
}

/// The bytes of a slice of plain values.
#[inline]
pub fn slice_as_bytes<T: Plain>(v: &[T]) -> &[u8] {
    // SAFETY: as in Plain::as_bytes; arrays of a padding-free type have no padding
    // between elements (size is a multiple of alignment).
    unsafe { core::slice::from_raw_parts(v.as_ptr().cast::<u8>(), size_of_val(v)) }
}

// SAFETY: integers have no padding and no invalid bit patterns.
unsafe impl Plain for u8 {}
// SAFETY: as above.
unsafe impl Plain for u16 {}
// SAFETY: as above.
unsafe impl Plain for u32 {}
// SAFETY: as above.
unsafe impl Plain for u64 {}
// SAFETY: as above.
unsafe impl Plain for i32 {}
// SAFETY: as above.
unsafe impl Plain for i64 {}
// SAFETY: an array of plain values has no padding (an element's size is a multiple of
// its alignment) and no invalid bit patterns.
unsafe impl<T: Plain, const N: usize> Plain for [T; N] {}

/// Declares `repr(C)` structs (`Clone`, `Copy` and `Debug`, as every plain value is)
/// and implements [`Plain`] for them, failing to compile when one has padding or a
/// field that is not [`Plain`].
///
/// ```
/// hwprof_wire::plain! {
///     pub struct Pair { pub a: u32, pub b: u32 }
/// }
/// use hwprof_wire::Plain;
/// assert_eq!(Pair { a: 1, b: 2 }.as_bytes(), &[1, 0, 0, 0, 2, 0, 0, 0]);
/// ```
/// Padding (here 7 bytes after `a`) does not compile:
/// ```compile_fail
/// hwprof_wire::plain! {
///     pub struct Padded { pub a: u8, pub b: u64 }
/// }
/// ```
/// Nor does a field that is not plain (a `bool` has invalid bit patterns):
/// ```compile_fail
/// hwprof_wire::plain! {
///     pub struct Flag { pub a: bool }
/// }
/// ```
#[macro_export]
macro_rules! plain {
    ($(
        $(#[$meta:meta])*
        pub struct $name:ident {
            $($(#[$fmeta:meta])* pub $field:ident : $ty:ty),* $(,)?
        }
    )*) => {$(
        $(#[$meta])*
        #[derive(Clone, Copy, Debug)]
        #[repr(C)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty),*
        }

        // No padding: the fields' sizes add up to the struct's.
        const _: () = assert!(
            size_of::<$name>() == 0 $(+ size_of::<$ty>())*,
            concat!(stringify!($name), " has padding: reorder or add reserved fields")
        );
        // Every field is plain.
        const _: () = {
            const fn field_is_plain<T: $crate::Plain>() {}
            $(field_is_plain::<$ty>();)*
        };
        // SAFETY: repr(C), no padding and plain fields (both checked above): every byte
        // is initialized and every bit pattern is a value.
        unsafe impl $crate::Plain for $name {}
    )*};
}

#[cfg(test)]
mod tests {
    use crate::{CapFrame, Config, FILE_MAGIC, FileHeader, Plain, slice_as_bytes};

    #[test]
    fn bytes_round_trip_and_short_input_is_none() {
        let h = FileHeader {
            magic: FILE_MAGIC,
            version: 1,
            pid: 42,
            method: 2,
            minor: 12,
        };
        let b = h.as_bytes();
        assert_eq!(b.len(), size_of::<FileHeader>());
        assert_eq!(&b[..8], b"HWPYCAP1");
        assert_eq!(&b[12..16], &42u32.to_le_bytes());
        let back = FileHeader::read_from(b).expect("whole header");
        assert_eq!((back.pid, back.minor), (42, 12));
        assert!(FileHeader::read_from(&b[..b.len() - 1]).is_none());
        // Unaligned input is fine.
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(b);
        assert_eq!(
            FileHeader::read_from(&shifted[1..]).map(|h| h.pid),
            Some(42)
        );
        assert!(Config::read_from(&[0; 16]).is_none());
    }

    #[test]
    fn slices_of_frames_are_their_frames_bytes() {
        let f = [CapFrame {
            code: 1,
            token: 2,
            self_type: 3,
            offset: 4,
            flags: 5,
        }; 3];
        let b = slice_as_bytes(&f);
        assert_eq!(b.len(), 3 * size_of::<CapFrame>());
        assert_eq!(CapFrame::read_from(&b[size_of::<CapFrame>()..]), Some(f[1]));
    }
}
