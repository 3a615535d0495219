//! The board a binary was built for: generated as a `const` by the root build.rs from
//! `board-configs/$TINYTAIL_BOARD.toml` and handed to the agent by `src/main.rs`.

use core::fmt;

/// Everything a board file says; each field is documented in the board files themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Board {
    pub name: &'static str,
    /// The target triple this board's binary is built for (checked by build.rs).
    pub target: &'static str,
    pub storage: Storage,
    pub lan_interface: &'static str,
    pub wan_interface: &'static str,
    pub tun_name: &'static str,
    /// Default listen address of the web page; `None` when the board file says "off".
    pub web_listen: Option<&'static str>,
    /// CA bundle for TLS to the control server and DERP.
    pub ca_bundle: &'static str,
}

/// Where the flash store lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// A flash image in a regular file at this path.
    File(&'static str),
    /// A raw MTD partition, by the name /proc/mtd gives it.
    Mtd(&'static str),
}

impl fmt::Display for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Storage::File(path) => write!(f, "file {path}"),
            Storage::Mtd(name) => write!(f, "mtd partition \"{name}\""),
        }
    }
}

impl fmt::Display for Board {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "board           {}", self.name)?;
        writeln!(f, "target          {}", self.target)?;
        writeln!(f, "storage         {}", self.storage)?;
        writeln!(f, "lan interface   {}", self.lan_interface)?;
        writeln!(f, "wan interface   {}", self.wan_interface)?;
        writeln!(f, "tun name        {}", self.tun_name)?;
        writeln!(f, "web listen      {}", self.web_listen.unwrap_or("off"))?;
        write!(f, "ca bundle       {}", self.ca_bundle)
    }
}
