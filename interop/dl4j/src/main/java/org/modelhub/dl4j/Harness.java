package org.modelhub.dl4j;

import com.google.gson.Gson;
import com.google.gson.GsonBuilder;
import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;

/**
 * Imports staged models with Deeplearning4j's own importers, runs them on the parity fixture's
 * inputs and compares with the source model's outputs.
 *
 * <pre>java -cp CP org.modelhub.dl4j.Harness JOBS.json OUT.json</pre>
 *
 * <p>JOBS.json: {@code {"store": ABS, "jobs": [{"id", "format": onnx|pb|h5, "path", "fixture",
 * "inputs": [...], "outputs": [...], "tolerance"}]}}. OUT.json: {@code {"dl4j_version",
 * "java_version", "results": [{"id", "ok", "stage", "error", "max_abs_diff", "seconds"}]}}, one
 * result per job, in order. Exit 0 when the harness ran (jobs may have failed), 2 for bad
 * arguments or an unreadable JOBS.json, 1 when OUT.json cannot be written.
 *
 * <p>By default this JVM only supervises: the jobs run in a child JVM (see {@link Supervisor}), so
 * a native crash in libnd4j (SIGSEGV, abort) fails the job it happened in and the remaining jobs
 * run in a fresh child. {@code -Dmodelhub.dl4j.supervise=false} runs them in this JVM.
 */
public final class Harness {

  /** Default parity tolerance (fp32), as modelhub's staging. */
  public static final double DEFAULT_TOLERANCE = 1e-4;

  /** Set on the child JVM the supervisor starts. */
  static final String CHILD_PROPERTY = "modelhub.dl4j.child";

  /** In the child: the file that is its stdout (libnd4j's messages), to read back. */
  static final String NATIVE_LOG_PROPERTY = "modelhub.dl4j.nativeLog";

  /** false: run the jobs in this JVM, no supervisor. */
  static final String SUPERVISE_PROPERTY = "modelhub.dl4j.supervise";

  /**
   * ND4J 1.0.0-M2.1 frees native buffers from a GC-driven deallocator thread, and that thread
   * double-frees (SIGSEGV in {@code deleteDataBuffer}) after some imports; with this property
   * true, buffers are left to the end of the process instead. Default true here; pass
   * {@code -Dorg.nd4j.noarraygc=false} to get ND4J's default back.
   */
  static final String NO_ARRAY_GC = "org.nd4j.noarraygc";

  /** The error a job carries while it runs; it stays there only if the JVM died in it. */
  static final String RUNNING = "the harness stopped during this job (JVM crash or kill)";

  /** Exit code of a child that stopped early to be replaced by a fresh one. */
  static final int EXIT_RESTART = 3;

  /**
   * The child JVM hands the remaining jobs to a fresh one once its resident memory passes this
   * many bytes (default 6 GiB; 0 = never). With {@link #NO_ARRAY_GC} nothing is freed until the
   * JVM ends, so this bounds what a long job list holds.
   */
  static final String RECYCLE_PROPERTY = "modelhub.dl4j.recycleBytes";

  static final long DEFAULT_RECYCLE_BYTES = 6L << 30;

  private static final int ERROR_MAX = 600;
  static final Gson GSON =
      new GsonBuilder().serializeNulls().setPrettyPrinting().disableHtmlEscaping().create();

  private Harness() {}

  /** One job of JOBS.json. */
  static final class Job {
    String id;
    String format;
    String path;
    String fixture;
    List<String> inputs = new ArrayList<>();
    List<String> outputs = new ArrayList<>();
    double tolerance = DEFAULT_TOLERANCE;
  }

  /** One entry of OUT.json's results. */
  static final class Result {
    final String id;
    boolean ok;
    String stage = "import";
    String error;
    Double maxAbsDiff;
    double seconds;
    transient boolean outOfMemory;

    Result(String id) {
      this.id = id;
    }

    Map<String, Object> toJson() {
      Map<String, Object> m = new LinkedHashMap<>();
      m.put("id", id);
      m.put("ok", ok);
      m.put("stage", stage);
      m.put("error", error);
      m.put("max_abs_diff", maxAbsDiff);
      m.put("seconds", Math.round(seconds * 1000.0) / 1000.0);
      return m;
    }
  }

  /** JOBS.json, checked: the store root and each job's raw JSON. */
  static final class JobsFile {
    final Path store;
    final List<JsonElement> jobs;

    JobsFile(Path store, List<JsonElement> jobs) {
      this.store = store;
      this.jobs = jobs;
    }
  }

  public static void main(String[] args) {
    // The importers print graph summaries with System.out: keep the harness's stdout clean.
    System.setOut(System.err);
    if (args.length != 2 || args[0].startsWith("-") || args[1].startsWith("-")) {
      System.err.println("usage: java -cp CP org.modelhub.dl4j.Harness JOBS.json OUT.json");
      System.exit(2);
      return;
    }
    Path jobsFile = Paths.get(args[0]);
    Path outFile = Paths.get(args[1]);
    JobsFile jobs;
    try {
      jobs = readJobs(jobsFile);
    } catch (Exception e) {
      System.err.println("modelhub-dl4j-harness: bad " + jobsFile + ": " + firstLine(e));
      System.exit(2);
      return;
    }
    int code;
    try {
      if (Boolean.getBoolean(CHILD_PROPERTY)) {
        watchParent();
        code = runJobs(jobs, outFile, true);
      } else if (!Boolean.parseBoolean(System.getProperty(SUPERVISE_PROPERTY, "true"))) {
        code = runJobs(jobs, outFile, false);
      } else {
        code = new Supervisor(jobs, outFile).run();
      }
    } catch (IOException e) {
      System.err.println("modelhub-dl4j-harness: cannot write " + outFile + ": " + firstLine(e));
      code = 1;
    }
    System.exit(code); // native thread pools may otherwise keep the JVM alive
  }

  /**
   * A child JVM ends when its supervisor is gone (killed by a caller's timeout, say): nothing
   * else would stop it, since a killed JVM runs no shutdown hooks.
   */
  static void watchParent() {
    ProcessHandle.current()
        .parent()
        .ifPresent(
            parent -> {
              Thread watcher =
                  new Thread(
                      () -> {
                        while (parent.isAlive()) {
                          try {
                            Thread.sleep(1000);
                          } catch (InterruptedException e) {
                            return;
                          }
                        }
                        System.err.println("[dl4j-harness] the supervisor is gone: stopping");
                        Runtime.getRuntime().halt(EXIT_RESTART);
                      },
                      "modelhub-parent-watch");
              watcher.setDaemon(true);
              watcher.start();
            });
  }

  static JobsFile readJobs(Path jobsFile) throws IOException {
    JsonObject root =
        new JsonParser()
            .parse(new String(Files.readAllBytes(jobsFile), StandardCharsets.UTF_8))
            .getAsJsonObject();
    JsonElement storeEl = root.get("store");
    if (storeEl == null || !storeEl.isJsonPrimitive()) {
      throw new IllegalArgumentException("\"store\" (an absolute path) is required");
    }
    Path store = Paths.get(storeEl.getAsString());
    if (!store.isAbsolute()) {
      throw new IllegalArgumentException("\"store\" must be absolute: " + store);
    }
    JsonElement jobsEl = root.get("jobs");
    if (jobsEl == null || !jobsEl.isJsonArray()) {
      throw new IllegalArgumentException("\"jobs\" (a list) is required");
    }
    List<JsonElement> jobs = new ArrayList<>();
    for (JsonElement el : jobsEl.getAsJsonArray()) {
      jobs.add(el);
    }
    return new JobsFile(store, jobs);
  }

  /** The header of OUT.json, with an empty results list. */
  static Map<String, Object> newOut(List<Map<String, Object>> results) {
    Map<String, Object> out = new LinkedHashMap<>();
    out.put("dl4j_version", dl4jVersion());
    out.put("java_version", System.getProperty("java.version"));
    out.put("results", results);
    return out;
  }

  /**
   * Runs the jobs in this JVM. OUT.json is rewritten (atomically) as each job starts, changes
   * stage and ends, so a JVM that dies leaves the finished jobs and names the job it died in.
   */
  static int runJobs(JobsFile jobs, Path outFile, boolean child) throws IOException {
    if (System.getProperty(NO_ARRAY_GC) == null) {
      System.setProperty(NO_ARRAY_GC, "true"); // before ND4J initialises (the first job)
    }
    List<Map<String, Object>> results = new ArrayList<>();
    Map<String, Object> out = newOut(results);
    NativeStdout nativeOut = null;
    String nativeLog = System.getProperty(NATIVE_LOG_PROPERTY);
    if (child && nativeLog != null) {
      nativeOut = NativeStdout.attach(Paths.get(nativeLog));
    } else if (!child) {
      nativeOut = NativeStdout.redirect();
    }
    try {
      write(outFile, out);
      for (JsonElement raw : jobs.jobs) {
        Object parsed = parseJob(raw);
        if (parsed instanceof Result) { // the job itself was malformed
          results.add(((Result) parsed).toJson());
          write(outFile, out);
          continue;
        }
        Job job = (Job) parsed;
        Result running = new Result(job.id);
        running.error = RUNNING;
        Map<String, Object> entry = running.toJson();
        results.add(entry);
        write(outFile, out);
        if (nativeOut != null) {
          nativeOut.drain();
        }
        Result r =
            JobRunner.run(
                jobs.store,
                job,
                stage -> {
                  entry.put("stage", stage);
                  try {
                    write(outFile, out);
                  } catch (IOException e) {
                    throw new java.io.UncheckedIOException(e);
                  }
                });
        if (nativeOut != null) {
          String reason = NativeStdout.reason(nativeOut.drain());
          if (!r.ok && r.error != null && r.error.contains("from c++") && reason != null) {
            r.error = clip(r.error + " " + reason);
          }
        }
        results.set(results.size() - 1, r.toJson());
        write(outFile, out);
        System.err.printf(
            Locale.ROOT,
            "[dl4j-harness] %s: %s stage=%s max_abs_diff=%s %.1fs%s%n",
            r.id,
            r.ok ? "ok" : "FAILED",
            r.stage,
            r.maxAbsDiff,
            r.seconds,
            r.error == null ? "" : " error=" + r.error);
        if (child && r.outOfMemory) {
          return EXIT_RESTART; // a fresh JVM for the rest
        }
        long limit = Long.getLong(RECYCLE_PROPERTY, DEFAULT_RECYCLE_BYTES);
        if (child && limit > 0 && JobRunner.residentBytes() > limit) {
          System.err.println("[dl4j-harness] resident memory over " + limit + " bytes: new JVM");
          return EXIT_RESTART;
        }
      }
    } finally {
      if (nativeOut != null) {
        nativeOut.close();
      }
    }
    return 0;
  }

  /** A Job, or a failed Result when the entry is malformed (that job fails, the others run). */
  static Object parseJob(JsonElement el) {
    String id = "?";
    try {
      JsonObject o = el.getAsJsonObject();
      id = o.has("id") && !o.get("id").isJsonNull() ? o.get("id").getAsString() : "?";
      Job job = new Job();
      job.id = id;
      job.format = requireString(o, "format").toLowerCase(Locale.ROOT);
      job.path = requireString(o, "path");
      job.fixture = requireString(o, "fixture");
      job.inputs = stringList(o, "inputs");
      job.outputs = stringList(o, "outputs");
      if (o.has("tolerance") && !o.get("tolerance").isJsonNull()) {
        job.tolerance = o.get("tolerance").getAsDouble();
      }
      if (job.outputs.isEmpty()) {
        throw new IllegalArgumentException("\"outputs\" must name at least one output");
      }
      return job;
    } catch (RuntimeException e) {
      Result r = new Result(id);
      r.error = "bad job: " + firstLine(e);
      return r;
    }
  }

  /** The id of a raw job entry, or "?" (for results about jobs that never ran). */
  static String idOf(JsonElement el) {
    try {
      JsonObject o = el.getAsJsonObject();
      return o.has("id") && !o.get("id").isJsonNull() ? o.get("id").getAsString() : "?";
    } catch (RuntimeException e) {
      return "?";
    }
  }

  private static String requireString(JsonObject o, String key) {
    JsonElement v = o.get(key);
    if (v == null || v.isJsonNull() || !v.isJsonPrimitive()) {
      throw new IllegalArgumentException("\"" + key + "\" (a string) is required");
    }
    return v.getAsString();
  }

  private static List<String> stringList(JsonObject o, String key) {
    JsonElement v = o.get(key);
    if (v == null || !v.isJsonArray()) {
      throw new IllegalArgumentException("\"" + key + "\" (a list of names) is required");
    }
    List<String> out = new ArrayList<>();
    JsonArray a = v.getAsJsonArray();
    for (JsonElement e : a) {
      out.add(e.getAsString());
    }
    return out;
  }

  /** {@code Class: first line of the message}; the root cause's when the top one says nothing. */
  static String firstLine(Throwable t) {
    Throwable shown = t;
    while ((shown.getMessage() == null || shown.getMessage().isBlank())
        && shown.getCause() != null
        && shown.getCause() != shown) {
      shown = shown.getCause();
    }
    String msg = shown.getMessage();
    String text = shown.getClass().getName();
    if (msg != null && !msg.isBlank()) {
      text += ": " + msg.strip().lines().findFirst().orElse("").strip();
    }
    return clip(text);
  }

  static String clip(String text) {
    return text.length() > ERROR_MAX ? text.substring(0, ERROR_MAX) + "..." : text;
  }

  /** The ND4J/DL4J release on the classpath, from nd4j-api's Maven metadata. */
  static String dl4jVersion() {
    String[] probes = {
      "META-INF/maven/org.nd4j/nd4j-api/pom.properties",
      "META-INF/maven/org.deeplearning4j/deeplearning4j-modelimport/pom.properties",
    };
    for (String probe : probes) {
      try (InputStream in = Harness.class.getClassLoader().getResourceAsStream(probe)) {
        if (in != null) {
          Properties p = new Properties();
          p.load(in);
          String v = p.getProperty("version");
          if (v != null) {
            return v;
          }
        }
      } catch (IOException ignored) {
        // try the next
      }
    }
    return "unknown";
  }

  static void write(Path target, Map<String, Object> doc) throws IOException {
    Path abs = target.toAbsolutePath();
    Path dir = abs.getParent();
    if (dir != null) {
      Files.createDirectories(dir);
    }
    Path tmp = abs.resolveSibling(abs.getFileName() + ".tmp");
    Files.write(tmp, (GSON.toJson(doc) + "\n").getBytes(StandardCharsets.UTF_8));
    try {
      Files.move(tmp, abs, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    } catch (AtomicMoveNotSupportedException e) {
      Files.move(tmp, abs, StandardCopyOption.REPLACE_EXISTING);
    }
  }
}
