package org.modelhub.dl4j;

import com.sun.jna.Library;
import com.sun.jna.Native;
import com.sun.jna.Pointer;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * libnd4j prints its diagnostics with C stdio on stdout (e.g. "CONCAT op: all input arrays must
 * have the same rank !") while the Java exception only says "Here is the error from c++:". With fd
 * 1 pointed at a file, the harness keeps its stdout clean and can add the native reason to a
 * job's error. Two ways: {@link #redirect()} points fd 1 at a scratch file itself (in-process
 * mode) and copies what it reads to stderr; {@link #attach(Path)} reads the file the supervisor
 * already made this JVM's stdout (the supervisor copies it to stderr, crash reports included).
 * Linux only (libc via JNA for fflush/dup2); when anything here fails the harness runs without.
 */
final class NativeStdout implements AutoCloseable {

  private static final int O_WRONLY = 1;
  private static final int O_APPEND = 02000;

  /** The libc calls needed. */
  public interface CLib extends Library {
    int open(String path, int flags);

    int dup(int fd);

    int dup2(int from, int to);

    int close(int fd);

    int fflush(Pointer stream);
  }

  private final CLib libc;
  private final Path file;
  /** The caller's fd 1 (dup'ed), restored on close; -1 when attached (nothing to restore). */
  private final int saved;

  private long offset;

  private NativeStdout(CLib libc, Path file, int saved) {
    this.libc = libc;
    this.file = file;
    this.saved = saved;
  }

  /** Reads {@code file}, which is already this process's stdout (set up by the supervisor). */
  static NativeStdout attach(Path file) {
    CLib libc = null;
    try {
      libc = Native.loadLibrary("c", CLib.class);
    } catch (Throwable t) {
      // no fflush: lines still buffered in C stdio are read at the next flush
    }
    NativeStdout n = new NativeStdout(libc, file, -1);
    try {
      n.offset = Files.size(file);
    } catch (IOException e) {
      n.offset = 0;
    }
    return n;
  }

  /** Redirects fd 1, or returns null (and leaves fd 1 alone) when that is not possible. */
  static NativeStdout redirect() {
    if (!Boolean.parseBoolean(System.getProperty("modelhub.dl4j.captureNativeStdout", "true"))) {
      return null;
    }
    Path file = null;
    try {
      CLib libc = Native.loadLibrary("c", CLib.class);
      file = Files.createTempFile("modelhub-dl4j-native-", ".log");
      int fd = libc.open(file.toString(), O_WRONLY | O_APPEND);
      if (fd < 0) {
        Files.deleteIfExists(file);
        return null;
      }
      libc.fflush(null);
      int saved = libc.dup(1);
      if (saved < 0 || libc.dup2(fd, 1) < 0) {
        libc.close(fd);
        Files.deleteIfExists(file);
        return null;
      }
      libc.close(fd);
      return new NativeStdout(libc, file, saved);
    } catch (Throwable t) { // no JNA, no libc: run without
      if (file != null) {
        try {
          Files.deleteIfExists(file);
        } catch (IOException ignored) {
          // nothing to clean
        }
      }
      return null;
    }
  }

  /** What native code printed since the last call (copied to stderr when this owns fd 1). */
  String drain() {
    try {
      if (libc != null) {
        libc.fflush(null);
      }
      try (RandomAccessFile in = new RandomAccessFile(file.toFile(), "r")) {
        long end = in.length();
        if (end <= offset) {
          return "";
        }
        byte[] buf = new byte[(int) Math.min(end - offset, 1 << 20)];
        in.seek(end - buf.length);
        in.readFully(buf);
        offset = end;
        String text = new String(buf, StandardCharsets.UTF_8);
        if (saved >= 0) {
          System.err.print(text);
          if (!text.endsWith("\n")) {
            System.err.println();
          }
        }
        return text;
      }
    } catch (Throwable t) {
      return "";
    }
  }

  /**
   * The most telling native line: the last one that is not a source location ("Error at [...]")
   * or a blank, or null.
   */
  static String reason(String text) {
    String best = null;
    for (String line : text.split("\n")) {
      String l = line.strip();
      if (l.isEmpty() || l.startsWith("Error at [")) {
        continue;
      }
      best = l;
    }
    return best;
  }

  @Override
  public void close() {
    if (saved < 0) {
      return; // attached: the supervisor owns the file
    }
    drain();
    try {
      libc.dup2(saved, 1);
      libc.close(saved);
      Files.deleteIfExists(file);
    } catch (Throwable ignored) {
      // best effort
    }
  }
}
