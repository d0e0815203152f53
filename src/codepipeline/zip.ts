import {type Zippable, unzipSync, zipSync} from 'fflate'
import {chmod, mkdir, readFile, readdir, stat, writeFile} from 'node:fs/promises'
import {dirname, isAbsolute, join, normalize, relative, resolve, sep} from 'node:path'

import {errorMessage} from '../core/errors.js'
import {JobFailure} from './job.js'

/**
 * Artifacts are zips: unpacked into a job's work directory (file modes kept, so `./build.sh` runs),
 * and packed from it (file modes recorded). Both in memory, bounded: zip bombs and runaway
 * artifacts fail the job instead of the worker.
 */
export const MAX_UNZIPPED_BYTES = 2 * 1024 ** 3

/** Where an entry of a zip lands under dir, refusing absolute paths and `..` escapes. */
export function safeEntryPath(dir: string, entry: string): string {
  const cleaned = entry.replace(/\\/g, '/')
  const target = resolve(dir, normalize(cleaned))
  if (isAbsolute(cleaned) || (target !== resolve(dir) && !target.startsWith(resolve(dir) + sep))) {
    throw new JobFailure('JobFailed', `artifact entry ${JSON.stringify(entry)} points outside the work directory`)
  }
  return target
}

/** Writes the entries of a zip under dir, with the permissions the zip recorded for them; returns the number of files. */
export async function extractZip(bytes: Uint8Array, dir: string, maxUnzipped = MAX_UNZIPPED_BYTES): Promise<number> {
  let entries: Record<string, Uint8Array>
  let total = 0
  try {
    entries = unzipSync(bytes, {
      filter(file) {
        total += file.originalSize
        if (total > maxUnzipped) throw new JobFailure('JobFailed', `artifact unpacks to more than ${maxUnzipped} bytes`)
        return true
      },
    })
  } catch (error) {
    if (error instanceof JobFailure) throw error
    throw new JobFailure('JobFailed', `artifact is not a valid zip: ${errorMessage(error)}`)
  }
  const modes = unixModes(bytes)
  await mkdir(dir, {recursive: true})
  let files = 0
  for (const [name, data] of Object.entries(entries)) {
    const target = safeEntryPath(dir, name)
    if (name.endsWith('/')) {
      await mkdir(target, {recursive: true})
      continue
    }
    await mkdir(dirname(target), {recursive: true})
    await writeFile(target, data)
    const permissions = filePermissions(modes.get(name))
    if (permissions !== undefined) await chmod(target, permissions)
    files++
  }
  return files
}

const REGULAR_FILE = 0o100000
const FILE_TYPE = 0o170000

/**
 * The permission bits to give an unpacked file: the zip's, without setuid/setgid/sticky, and
 * always readable and writable by the worker (it zips outputs and removes the work directory).
 * undefined: the zip recorded none (made on Windows, or by a tool that leaves them out).
 */
function filePermissions(mode: number | undefined): number | undefined {
  if (!mode) return undefined
  const type = mode & FILE_TYPE
  if (type !== 0 && type !== REGULAR_FILE) return undefined
  return (mode & 0o777) | 0o600
}

const END_OF_CENTRAL_DIRECTORY = 0x06054b50
const ZIP64_LOCATOR = 0x07064b50
const ZIP64_END = 0x06064b50
const CENTRAL_HEADER = 0x02014b50
// APPNOTE 4.4.2: the host system of "version made by"; Unix and macOS keep st_mode in the high 16 bits of the external attributes.
const UNIX_HOSTS = new Set([3, 19])
const UTF8_NAMES = 0x800

/**
 * The Unix modes a zip records, by entry name (fflate unpacks the data but not the attributes):
 * read from the central directory (zip64 included).
 */
export function unixModes(bytes: Uint8Array): Map<string, number> {
  const modes = new Map<string, number>()
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const end = findEndOfCentralDirectory(view)
  if (end < 0) return modes
  let count = view.getUint16(end + 10, true)
  let offset = view.getUint32(end + 16, true)
  if ((count === 0xffff || offset === 0xffffffff) && end >= 20 && view.getUint32(end - 20, true) === ZIP64_LOCATOR) {
    const zip64 = Number(view.getBigUint64(end - 12, true))
    if (zip64 + 56 <= view.byteLength && view.getUint32(zip64, true) === ZIP64_END) {
      count = Number(view.getBigUint64(zip64 + 32, true))
      offset = Number(view.getBigUint64(zip64 + 48, true))
    }
  }
  for (let at = offset, i = 0; i < count && at + 46 <= view.byteLength && view.getUint32(at, true) === CENTRAL_HEADER; i++) {
    const host = view.getUint8(at + 5)
    const flags = view.getUint16(at + 8, true)
    const nameLength = view.getUint16(at + 28, true)
    const fieldsLength = nameLength + view.getUint16(at + 30, true) + view.getUint16(at + 32, true)
    const mode = view.getUint32(at + 38, true) >>> 16
    if (UNIX_HOSTS.has(host) && mode !== 0) {
      // The name as fflate reads it: UTF-8 when the entry says so, else byte for byte.
      const name = Buffer.from(bytes.subarray(at + 46, at + 46 + nameLength)).toString(flags & UTF8_NAMES ? 'utf8' : 'latin1')
      modes.set(name, mode)
    }
    at += 46 + fieldsLength
  }
  return modes
}

/** The end-of-central-directory record: in the last 22 bytes, or up to 64 KiB earlier behind a comment. */
function findEndOfCentralDirectory(view: DataView): number {
  for (let at = view.byteLength - 22; at >= Math.max(0, view.byteLength - 22 - 0xffff); at--) {
    if (view.getUint32(at, true) === END_OF_CENTRAL_DIRECTORY) return at
  }
  return -1
}

/** Collects files (directories recursively) into a zip keyed by their path relative to root, modes recorded. */
export async function zipPaths(root: string, paths: string[]): Promise<{zip: Uint8Array; files: number}> {
  const tree: Zippable = {}
  let files = 0
  let total = 0
  const add = async (absolute: string) => {
    const info = await stat(absolute)
    if (info.isDirectory()) {
      for (const child of await readdir(absolute)) await add(join(absolute, child))
      return
    }
    if (!info.isFile()) return
    total += info.size
    if (total > MAX_UNZIPPED_BYTES) throw new JobFailure('JobFailed', `output artifact is larger than ${MAX_UNZIPPED_BYTES} bytes`)
    const rel = relative(root, absolute).split(sep).join('/')
    // Unix host, regular file with its permission bits: a deploy step unpacking it gets `./run.sh` back as it was.
    tree[rel] = [await readFile(absolute), {mtime: info.mtime, os: 3, attrs: (REGULAR_FILE | (info.mode & 0o777)) * 0x10000}]
    files++
  }
  for (const path of paths) {
    const absolute = safeEntryPath(root, path)
    try {
      await stat(absolute)
    } catch {
      throw new JobFailure('JobFailed', `output path ${path} was not produced by the job`)
    }
    await add(absolute)
  }
  return {zip: zipSync(tree, {level: 6}), files}
}
