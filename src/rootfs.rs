//! Paths inside an offline root: resolved without ever leaving it, whatever its symlinks say.
