package org.modelhub.dl4j;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;

import java.io.IOException;
import java.io.InputStream;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * Runs the jobs in a child JVM and survives it: when libnd4j kills the child (SIGSEGV, abort) the
 * job it was running gets the crash as its error, and the jobs after it run in a new child. This
 * JVM never loads ND4J. The child's stdout (libnd4j's printf diagnostics, the JVM's crash banner)
 * goes to a scratch file that is copied to stderr after each child; the JVM's hs_err report goes
 * to a scratch file too (not to the caller's working directory) and its key lines into the error.
 *
 * <p>{@code -Dmodelhub.dl4j.jobTimeoutSeconds=N} (default 0: none) kills a child whose job has
 * run for more than N seconds; that job fails with "timed out", the rest go on.
 */
final class Supervisor {

  static final String TIMEOUT_PROPERTY = "modelhub.dl4j.jobTimeoutSeconds";

  private static final Pattern SIGNAL = Pattern.compile("#\\s+(SIG[A-Z]+ \\(0x[0-9a-f]+\\))");
  private static final String[] SIGNAL_NAMES = {
    "", "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE",
    "SIGKILL", "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM",
  };

  private final Harness.JobsFile jobs;
  private final Path outFile;
  private final long timeoutMillis;

  Supervisor(Harness.JobsFile jobs, Path outFile) {
    this.jobs = jobs;
    this.outFile = outFile;
    this.timeoutMillis = Math.max(0L, Long.getLong(TIMEOUT_PROPERTY, 0L)) * 1000L;
  }

  int run() throws IOException {
    List<Map<String, Object>> results = new ArrayList<>();
    Map<String, Object> out = Harness.newOut(results);
    Harness.write(outFile, out);
    Path work = Files.createTempDirectory("modelhub-dl4j-");
    try {
      int next = 0;
      while (next < jobs.jobs.size()) {
        next += runChild(work, next, results);
        Harness.write(outFile, out);
      }
    } finally {
      deleteTree(work);
    }
    return 0;
  }

  /** Runs jobs {@code from..} in a child JVM; returns how many got a result (at least one). */
  private int runChild(Path work, int from, List<Map<String, Object>> results) throws IOException {
    List<JsonElement> batch = jobs.jobs.subList(from, jobs.jobs.size());
    Path childJobs = work.resolve("jobs.json");
    Path childOut = work.resolve("out.json");
    Path nativeLog = work.resolve("stdout.log");
    Path errorFile = work.resolve("hs_err.log");
    JsonObject doc = new JsonObject();
    doc.addProperty("store", jobs.store.toString());
    JsonArray array = new JsonArray();
    batch.forEach(array::add);
    doc.add("jobs", array);
    Files.write(childJobs, Harness.GSON.toJson(doc).getBytes(StandardCharsets.UTF_8));
    Files.deleteIfExists(childOut);
    Files.deleteIfExists(errorFile);
    Files.write(nativeLog, new byte[0]);

    List<String> cmd = new ArrayList<>();
    cmd.add(Paths.get(System.getProperty("java.home"), "bin", "java").toString());
    for (String arg : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
      if (!arg.startsWith("-D" + Harness.CHILD_PROPERTY)
          && !arg.startsWith("-D" + Harness.NATIVE_LOG_PROPERTY)
          && !arg.startsWith("-XX:ErrorFile")) {
        cmd.add(arg);
      }
    }
    cmd.add("-D" + Harness.CHILD_PROPERTY + "=true");
    cmd.add("-D" + Harness.NATIVE_LOG_PROPERTY + "=" + nativeLog);
    cmd.add("-XX:ErrorFile=" + errorFile);
    if (System.getProperty("jna.tmpdir") == null) {
      cmd.add("-Djna.tmpdir=" + work); // JNA unpacks its native library here: gone with work
    }
    cmd.add("-cp");
    cmd.add(System.getProperty("java.class.path"));
    cmd.add(Harness.class.getName());
    cmd.add(childJobs.toString());
    cmd.add(childOut.toString());

    Process child =
        new ProcessBuilder(cmd)
            .redirectOutput(ProcessBuilder.Redirect.appendTo(nativeLog.toFile()))
            .redirectError(ProcessBuilder.Redirect.INHERIT)
            .start();
    child.getOutputStream().close();
    Thread reaper = new Thread(child::destroyForcibly, "modelhub-child-reaper");
    Runtime.getRuntime().addShutdownHook(reaper);

    int watched = -1;
    long since = System.nanoTime();
    boolean timedOut = false;
    try {
      while (!child.waitFor(250, TimeUnit.MILLISECONDS)) {
        int running = runningIndex(readResults(childOut));
        if (running != watched) {
          watched = running;
          since = System.nanoTime();
        } else if (running >= 0
            && timeoutMillis > 0
            && (System.nanoTime() - since) / 1_000_000L > timeoutMillis) {
          child.destroyForcibly();
          child.waitFor();
          timedOut = true;
          break;
        }
      }
    } catch (InterruptedException e) {
      child.destroyForcibly();
      Thread.currentThread().interrupt();
    }
    try {
      Runtime.getRuntime().removeShutdownHook(reaper);
    } catch (IllegalStateException shuttingDown) {
      // the hook runs anyway
    }
    double runningSeconds = (System.nanoTime() - since) / 1e9;
    int code = child.isAlive() ? -1 : child.exitValue();
    copyToStderr(nativeLog);

    List<Map<String, Object>> childResults = readResults(childOut);
    int settled = 0;
    for (Map<String, Object> r : childResults) {
      settled++;
      if (Harness.RUNNING.equals(r.get("error"))) {
        r.put("error", death(code, errorFile, timedOut));
        r.put("seconds", Math.round(runningSeconds * 1000.0) / 1000.0);
        results.add(r);
        break;
      }
      results.add(r);
    }
    if (settled == 0) { // the child died before it started the first job
      Harness.Result r = new Harness.Result(Harness.idOf(batch.get(0)));
      r.error = death(code, errorFile, timedOut);
      results.add(r.toJson());
      settled = 1;
    } else if (settled < batch.size() && code == 0) {
      // A child that exits 0 has run every job; fewer results means it lost track: stop here.
      Harness.Result r = new Harness.Result(Harness.idOf(batch.get(settled)));
      r.error = "the harness child exited without a result for this job";
      results.add(r.toJson());
      settled++;
    }
    return settled;
  }

  /** Why the child died, for the job it was running: the hs_err summary when there is one. */
  private String death(int code, Path errorFile, boolean timedOut) {
    if (timedOut) {
      return String.format(
          Locale.ROOT, "timed out after %d s (the harness killed its JVM)", timeoutMillis / 1000);
    }
    StringBuilder why = new StringBuilder("the JVM died during this job");
    if (code > 128 && code - 128 < SIGNAL_NAMES.length) {
      why.append(" (exit ").append(code).append(", ").append(SIGNAL_NAMES[code - 128]).append(')');
    } else {
      why.append(" (exit ").append(code).append(')');
    }
    if (Files.isRegularFile(errorFile)) {
      try {
        List<String> lines = Files.readAllLines(errorFile, StandardCharsets.ISO_8859_1);
        String signal = null;
        String frame = null;
        for (int i = 0; i < lines.size() && i < 40; i++) {
          Matcher m = SIGNAL.matcher(lines.get(i));
          if (signal == null && m.find()) {
            signal = m.group(1);
          }
          if (lines.get(i).startsWith("# Problematic frame:") && i + 1 < lines.size()) {
            frame = lines.get(i + 1).replaceFirst("^#\\s*", "").replaceAll("\\s+", " ").strip();
          }
        }
        if (signal != null) {
          why.append(": ").append(signal);
        }
        if (frame != null) {
          why.append(" in ").append(frame);
        }
        System.err.println("[dl4j-harness] JVM crash report (hs_err), first lines:");
        lines.stream().limit(30).forEach(System.err::println);
      } catch (IOException e) {
        // the exit code is all there is
      }
    }
    return Harness.clip(why.toString());
  }

  /** Index of the result that is still marked running, or -1. */
  private static int runningIndex(List<Map<String, Object>> results) {
    for (int i = results.size() - 1; i >= 0; i--) {
      if (Harness.RUNNING.equals(results.get(i).get("error"))) {
        return i;
      }
    }
    return -1;
  }

  /** The child's results so far (empty when it wrote none or the file is unreadable). */
  private static List<Map<String, Object>> readResults(Path childOut) {
    List<Map<String, Object>> out = new ArrayList<>();
    if (!Files.isRegularFile(childOut)) {
      return out;
    }
    try {
      JsonObject root =
          new JsonParser()
              .parse(new String(Files.readAllBytes(childOut), StandardCharsets.UTF_8))
              .getAsJsonObject();
      for (JsonElement el : root.getAsJsonArray("results")) {
        JsonObject o = el.getAsJsonObject();
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("id", string(o, "id"));
        r.put("ok", o.has("ok") && o.get("ok").getAsBoolean());
        r.put("stage", string(o, "stage"));
        r.put("error", string(o, "error"));
        r.put("max_abs_diff", number(o, "max_abs_diff"));
        Double seconds = number(o, "seconds");
        r.put("seconds", seconds == null ? 0.0 : seconds);
        out.add(r);
      }
    } catch (IOException | RuntimeException e) {
      // being rewritten or broken: treat as nothing yet
    }
    return out;
  }

  private static String string(JsonObject o, String key) {
    JsonElement v = o.get(key);
    return v == null || v.isJsonNull() ? null : v.getAsString();
  }

  private static Double number(JsonObject o, String key) {
    JsonElement v = o.get(key);
    return v == null || v.isJsonNull() ? null : v.getAsDouble();
  }

  private static void copyToStderr(Path file) {
    try (InputStream in = Files.newInputStream(file)) {
      byte[] data = in.readAllBytes();
      if (data.length > 0) {
        System.err.println("[dl4j-harness] native stdout of the harness JVM:");
        System.err.write(data, 0, data.length);
        System.err.println();
        System.err.flush();
      }
    } catch (IOException ignored) {
      // nothing to copy
    }
  }

  private static void deleteTree(Path dir) {
    try (Stream<Path> walk = Files.walk(dir)) {
      walk.sorted(Comparator.reverseOrder())
          .forEach(
              p -> {
                try {
                  Files.deleteIfExists(p);
                } catch (IOException ignored) {
                  // best effort
                }
              });
    } catch (IOException ignored) {
      // best effort
    }
  }
}
