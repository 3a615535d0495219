//! The store on a Linux device: a raw MTD partition (`/dev/mtdN`, found by name in /proc/mtd),
//! or a flash image kept in a regular file (the default on generic Linux).

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::flash::{Flash, FlashError, Geometry};
use super::format::{BlockHeader, HeaderRead, BLOCK_HEADER_LEN, ERASED};
use super::log::{Mode, Store};
use super::StoreError;
use crate::board::Storage;

/// Erase block size of a new image file. Large enough for a TKA chain or a certificate with its
/// key in one transaction; a file has no real erase blocks, so this only sets the largest value.
pub const IMAGE_BLOCK_SIZE: u32 = 32 * 1024;
/// Blocks in a new image file: 512 KiB, of which 15 blocks (about 480 KiB) hold records.
pub const IMAGE_BLOCK_COUNT: u32 = 16;
/// The image holds private keys: owner read/write only.
const SECRET_FILE_MODE: u32 = 0o600;
/// A directory created for the image: owner only.
const STATE_DIR_MODE: u32 = 0o700;
/// Where the kernel lists MTD partitions with their names.
const PROC_MTD: &str = "/proc/mtd";

/// Opens the store where the board (or `--state PATH`) says, recovering and repairing it. A
/// missing image file is created. `override_path` naming `/dev/mtd*` opens that MTD device.
pub fn open(storage: &Storage, override_path: Option<&Path>) -> Result<Store<DeviceFlash>, StoreError> {
    Store::open(DeviceFlash::open(storage, override_path, Mode::ReadWrite)?)
}

/// Opens the store without writing anything (for `tinytail store info` beside a running agent).
pub fn open_read_only(
    storage: &Storage,
    override_path: Option<&Path>,
) -> Result<Store<DeviceFlash>, StoreError> {
    Store::open_read_only(DeviceFlash::open(storage, override_path, Mode::ReadOnly)?)
}

/// Either Linux backend.
#[derive(Debug)]
pub enum DeviceFlash {
    File(FileFlash),
    Mtd(MtdFlash),
}

impl DeviceFlash {
    pub fn open(storage: &Storage, override_path: Option<&Path>, mode: Mode) -> Result<Self, StoreError> {
        match (override_path, storage) {
            (Some(path), _) if path.starts_with("/dev") && is_mtd_path(path) => {
                Ok(DeviceFlash::Mtd(MtdFlash::open(path, mode)?))
            }
            (Some(path), _) => Ok(DeviceFlash::File(FileFlash::open(path, mode)?)),
            (None, Storage::File(path)) => Ok(DeviceFlash::File(FileFlash::open(Path::new(path), mode)?)),
            (None, Storage::Mtd(name)) => {
                let proc_mtd = fs::read_to_string(PROC_MTD).map_err(FlashError::Io)?;
                let device = find_mtd_device(&proc_mtd, name).ok_or_else(|| {
                    FlashError::Io(io::Error::new(
                        ErrorKind::NotFound,
                        format!("no MTD partition named \"{name}\" in {PROC_MTD}"),
                    ))
                })?;
                Ok(DeviceFlash::Mtd(MtdFlash::open(&Path::new("/dev").join(device), mode)?))
            }
        }
    }

    /// The file or device the store lives in.
    pub fn path(&self) -> &Path {
        match self {
            DeviceFlash::File(f) => &f.path,
            DeviceFlash::Mtd(m) => &m.path,
        }
    }
}

impl Flash for DeviceFlash {
    fn geometry(&self) -> Geometry {
        match self {
            DeviceFlash::File(f) => f.geometry,
            DeviceFlash::Mtd(m) => m.geometry,
        }
    }

    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<(), FlashError> {
        let geometry = self.geometry();
        super::flash::check_access(geometry, offset, buf.len(), false)?;
        let file = match self {
            DeviceFlash::File(f) => &f.file,
            DeviceFlash::Mtd(m) => &m.file,
        };
        Ok(file.read_exact_at(buf, u64::from(offset))?)
    }

    fn program(&mut self, offset: u32, data: &[u8]) -> Result<(), FlashError> {
        super::flash::check_access(self.geometry(), offset, data.len(), true)?;
        let file = match self {
            DeviceFlash::File(f) => &f.file,
            DeviceFlash::Mtd(m) => &m.file,
        };
        Ok(file.write_all_at(data, u64::from(offset))?)
    }

    fn erase(&mut self, block: u32) -> Result<(), FlashError> {
        match self {
            DeviceFlash::File(f) => f.erase(block),
            DeviceFlash::Mtd(m) => m.erase(block),
        }
    }

    fn sync(&mut self) -> Result<(), FlashError> {
        match self {
            DeviceFlash::File(f) => Ok(f.file.sync_data()?),
            // Writes to an MTD character device reach the chip before write() returns.
            DeviceFlash::Mtd(_) => Ok(()),
        }
    }
}

/// A flash image in a regular file: erase writes 0xFF, programs write bytes, and `sync` is
/// fdatasync. A new image is created 0600 and its directory fsynced, so the file itself survives
/// a power cut right after creation.
#[derive(Debug)]
pub struct FileFlash {
    file: File,
    geometry: Geometry,
    path: PathBuf,
}

impl FileFlash {
    pub fn open(path: &Path, mode: Mode) -> Result<Self, StoreError> {
        Self::open_with(
            path,
            mode,
            Geometry { block_size: IMAGE_BLOCK_SIZE, block_count: IMAGE_BLOCK_COUNT, write_size: 1 },
        )
    }

    /// Opens `path`, creating it with `new_geometry` when missing (read-write only). An existing
    /// image keeps the block size its headers record.
    pub fn open_with(path: &Path, mode: Mode, new_geometry: Geometry) -> Result<Self, StoreError> {
        let new_geometry = new_geometry.check()?;
        let file = match (mode, OpenOptions::new().read(true).write(mode == Mode::ReadWrite).open(path)) {
            (_, Ok(file)) => file,
            (Mode::ReadWrite, Err(e)) if e.kind() == ErrorKind::NotFound => create_image(path, new_geometry)?,
            (_, Err(e)) => return Err(io_error(path, e)),
        };
        if mode == Mode::ReadWrite {
            lock_exclusive(&file, path)?;
            // An image someone copied or created by hand may be readable by others: it holds keys.
            let permissions = file.metadata().map_err(|e| io_error(path, e))?.permissions();
            if permissions.mode() & 0o777 != SECRET_FILE_MODE {
                file.set_permissions(fs::Permissions::from_mode(SECRET_FILE_MODE))
                    .map_err(|e| io_error(path, e))?;
            }
        }
        let len = file.metadata().map_err(|e| io_error(path, e))?.len();
        let mut first = [0u8; BLOCK_HEADER_LEN];
        file.read_exact_at(&mut first, 0).map_err(|e| io_error(path, e))?;
        let block_size = match BlockHeader::parse(&first) {
            HeaderRead::Valid(header) => header.block_size,
            _ => new_geometry.block_size,
        };
        let block_count = u32::try_from(len / u64::from(block_size)).unwrap_or(0);
        let geometry = Geometry { block_size, block_count, write_size: 1 };
        if u64::from(block_size) * u64::from(block_count) != len {
            return Err(StoreError::Flash(FlashError::BadGeometry(geometry)));
        }
        Ok(FileFlash { file, geometry: geometry.check()?, path: path.to_path_buf() })
    }

    fn erase(&mut self, block: u32) -> Result<(), FlashError> {
        if block >= self.geometry.block_count {
            return Err(FlashError::OutOfRange {
                offset: block.saturating_mul(self.geometry.block_size),
                len: 0,
            });
        }
        let erased = vec![ERASED; self.geometry.block_size as usize];
        Ok(self.file.write_all_at(&erased, u64::from(self.geometry.block_start(block)))?)
    }
}

/// Creates an erased image with owner-only permissions, and makes the new directory entry durable.
fn create_image(path: &Path, geometry: Geometry) -> Result<File, StoreError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    DirBuilder::new().recursive(true).mode(STATE_DIR_MODE).create(dir).map_err(|e| io_error(dir, e))?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(SECRET_FILE_MODE)
        .open(path)
        .map_err(|e| io_error(path, e))?;
    let erased = vec![ERASED; geometry.block_size as usize];
    for block in 0..geometry.block_count {
        file.write_all_at(&erased, u64::from(geometry.block_start(block))).map_err(|e| io_error(path, e))?;
    }
    file.sync_all().map_err(|e| io_error(path, e))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_error(dir, e))?;
    Ok(file)
}

/// One writer at a time: a second agent (or a repair racing it) would corrupt the log.
fn lock_exclusive(file: &File, path: &Path) -> Result<(), StoreError> {
    // SAFETY: flock only reads the descriptor number, which `file` keeps open for the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.kind() == ErrorKind::WouldBlock {
        Err(StoreError::Locked(path.display().to_string()))
    } else {
        Err(io_error(path, e))
    }
}

fn io_error(path: &Path, e: io::Error) -> StoreError {
    StoreError::Flash(FlashError::Io(io::Error::new(e.kind(), format!("{}: {e}", path.display()))))
}

/// A raw MTD partition through its character device: MEMGETINFO for the shape, MEMERASE to erase,
/// pread/pwrite for the rest. NOR only: NAND needs bad-block handling and page-once writes.
#[derive(Debug)]
pub struct MtdFlash {
    file: File,
    geometry: Geometry,
    path: PathBuf,
}

/// `struct mtd_info_user` from <mtd/mtd-abi.h>.
#[repr(C)]
#[derive(Debug, Default)]
struct MtdInfoUser {
    kind: u8,
    flags: u32,
    size: u32,
    erasesize: u32,
    writesize: u32,
    oobsize: u32,
    padding: u64,
}

/// `struct erase_info_user` from <mtd/mtd-abi.h>.
#[repr(C)]
struct EraseInfoUser {
    start: u32,
    length: u32,
}

/// `MEMGETINFO = _IOR('M', 1, struct mtd_info_user)` (<mtd/mtd-abi.h>); libc's `_IOR` knows
/// the per-architecture encoding (MIPS differs).
const MEMGETINFO: libc::Ioctl = libc::_IOR::<MtdInfoUser>(b'M' as u32, 1);
/// `MEMERASE = _IOW('M', 2, struct erase_info_user)`.
const MEMERASE: libc::Ioctl = libc::_IOW::<EraseInfoUser>(b'M' as u32, 2);
/// `mtd_info_user.type` values we accept (<mtd/mtd-abi.h>): MTD_RAM (mtdram, for testing) and
/// MTD_NORFLASH.
const MTD_RAM: u8 = 1;
const MTD_NORFLASH: u8 = 3;
/// `MTD_WRITEABLE` in `mtd_info_user.flags`.
const MTD_WRITEABLE: u32 = 0x400;

impl MtdFlash {
    pub fn open(path: &Path, mode: Mode) -> Result<Self, StoreError> {
        let file = OpenOptions::new()
            .read(true)
            .write(mode == Mode::ReadWrite)
            .open(path)
            .map_err(|e| io_error(path, e))?;
        if mode == Mode::ReadWrite {
            lock_exclusive(&file, path)?;
        }
        let mut info = MtdInfoUser::default();
        // SAFETY: MEMGETINFO writes one mtd_info_user, which `info` is, and nothing else.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), MEMGETINFO, &mut info as *mut MtdInfoUser) };
        if rc != 0 {
            return Err(io_error(path, io::Error::last_os_error()));
        }
        let unsupported = |why: String| io_error(path, io::Error::new(ErrorKind::Unsupported, why));
        if info.kind != MTD_NORFLASH && info.kind != MTD_RAM {
            return Err(unsupported(format!(
                "MTD type {} is not NOR flash; NAND needs bad-block handling (keep the image in a file on UBIFS instead)",
                info.kind
            )));
        }
        if mode == Mode::ReadWrite && info.flags & MTD_WRITEABLE == 0 {
            return Err(unsupported("MTD partition is read-only".to_string()));
        }
        let erasesize = info.erasesize.max(1);
        let geometry = Geometry {
            block_size: erasesize,
            block_count: info.size / erasesize,
            write_size: info.writesize.max(1),
        };
        Ok(MtdFlash { file, geometry: geometry.check()?, path: path.to_path_buf() })
    }

    fn erase(&mut self, block: u32) -> Result<(), FlashError> {
        if block >= self.geometry.block_count {
            return Err(FlashError::OutOfRange {
                offset: block.saturating_mul(self.geometry.block_size),
                len: 0,
            });
        }
        let request =
            EraseInfoUser { start: self.geometry.block_start(block), length: self.geometry.block_size };
        // SAFETY: MEMERASE reads one erase_info_user, which `request` is, for the call only.
        let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), MEMERASE, &request as *const EraseInfoUser) };
        if rc != 0 {
            return Err(FlashError::Io(io::Error::last_os_error()));
        }
        Ok(())
    }
}

/// True for `/dev/mtdN` (the character device; `/dev/mtdblockN` is the block layer, not flash).
fn is_mtd_path(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("mtd"))
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Finds the device (`mtd3`) of the partition called `name` in the text of /proc/mtd:
/// `mtd3: 00100000 00010000 "tinytail"` (device, size, erase size, quoted name).
pub fn find_mtd_device(proc_mtd: &str, name: &str) -> Option<String> {
    proc_mtd.lines().find_map(|line| {
        let (device, rest) = line.split_once(':')?;
        let quoted = rest.trim().splitn(3, ' ').nth(2)?;
        let partition = quoted.strip_prefix('"')?.strip_suffix('"')?;
        (partition == name && is_mtd_path(Path::new(device))).then(|| device.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Record, Transaction};

    const PROC_MTD_SAMPLE: &str = "dev:    size   erasesize  name\n\
        mtd0: 00040000 00010000 \"u-boot\"\n\
        mtd1: 00010000 00010000 \"art\"\n\
        mtd2: 00f30000 00010000 \"firmware\"\n\
        mtd3: 00080000 00010000 \"tinytail\"\n";

    #[test]
    fn finds_mtd_partitions_by_exact_name() {
        assert_eq!(find_mtd_device(PROC_MTD_SAMPLE, "tinytail").as_deref(), Some("mtd3"));
        assert_eq!(find_mtd_device(PROC_MTD_SAMPLE, "tiny"), None);
        assert_eq!(find_mtd_device("garbage\n: \"\"\nmtdx: 1 2 \"tinytail\"", "tinytail"), None);
    }

    #[test]
    fn mtd_ioctl_numbers_match_the_kernel_headers() {
        // From <mtd/mtd-abi.h> as compiled by gcc for each architecture.
        let (getinfo, erase): (u32, u32) = if cfg!(any(target_arch = "mips", target_arch = "mips64")) {
            (0x4020_4D01, 0x8008_4D02)
        } else {
            (0x8020_4D01, 0x4008_4D02)
        };
        assert_eq!(MEMGETINFO as u32, getinfo);
        assert_eq!(MEMERASE as u32, erase);
    }

    #[test]
    fn mtd_paths_are_the_character_devices() {
        assert!(is_mtd_path(Path::new("/dev/mtd3")));
        assert!(!is_mtd_path(Path::new("/dev/mtdblock3")));
        assert!(!is_mtd_path(Path::new("/dev/mtd")));
    }

    fn temp_dir(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tinytail-store-{test}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn image_file_is_created_0600_in_a_0700_dir_and_survives_reopen() {
        let dir = temp_dir("create");
        let path = dir.join("state").join("state.img");
        let storage = Storage::File("unused");
        {
            let mut store = open(&storage, Some(&path)).unwrap();
            let mut tx = Transaction::new();
            tx.put(Record::NodeKey, &[7; 32]).unwrap().put(Record::PreviousNodeKey, &[6; 32]).unwrap();
            store.commit(&tx).unwrap();
        }
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.len(), u64::from(IMAGE_BLOCK_SIZE * IMAGE_BLOCK_COUNT));
        assert_eq!(fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        let store = open_read_only(&storage, Some(&path)).unwrap();
        assert_eq!(store.get_key32(Record::NodeKey).unwrap(), Some([7; 32]));
        assert_eq!(store.get(Record::PreviousNodeKey), Some(&[6u8; 32][..]));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn loose_permissions_are_tightened_and_a_second_writer_is_refused() {
        let dir = temp_dir("perms");
        let path = dir.join("state.img");
        let storage = Storage::File("unused");
        drop(open(&storage, Some(&path)).unwrap());
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let first = open(&storage, Some(&path)).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(matches!(open(&storage, Some(&path)), Err(StoreError::Locked(_))));
        assert!(open_read_only(&storage, Some(&path)).is_ok());
        drop(first);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn read_only_open_of_a_missing_image_fails_without_creating_it() {
        let dir = temp_dir("missing");
        let path = dir.join("state.img");
        assert!(open_read_only(&Storage::File("unused"), Some(&path)).is_err());
        assert!(!path.exists());
    }

    #[test]
    fn a_truncated_image_is_refused_not_erased() {
        let dir = temp_dir("truncated");
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state.img");
        fs::write(&path, vec![0xAB; 1000]).unwrap();
        assert!(matches!(
            open(&Storage::File("unused"), Some(&path)),
            Err(StoreError::Flash(FlashError::BadGeometry(_)))
        ));
        assert_eq!(fs::read(&path).unwrap(), vec![0xAB; 1000]);
        fs::remove_dir_all(&dir).unwrap();
    }
}
