package org.modelhub.dl4j;

import java.nio.file.Path;
import java.nio.file.Paths;

/**
 * Store path resolution, omnihub's layout: {@code <root>/<framework>/<name>}.
 *
 * <p>DL4J's own {@code org.deeplearning4j:omnihub} (1.0.0-M2.1) is on Maven Central, but its
 * resolution cannot be used here (see README.md): {@code OmniHubUtils.downloadAndLoadFromZoo}
 * takes no root (only {@code OmnihubConfig.getOmnihubHome()}, which in M2.1 returns the literal
 * relative path {@code "OMNIHUB_HOME"} whenever that variable is set, and {@code ~/.omnihub}
 * otherwise), downloads from the internet when the file is missing, and deletes the file when
 * asked to force. So the same arithmetic is done here, against an explicit root, read-only, and
 * refusing any path that would leave the store.
 */
public final class StorePaths {

  private StorePaths() {}

  /** {@code <root>/<framework>/<name>}, as omnihub lays a model out. */
  public static Path resolve(Path root, String framework, String name) {
    return resolve(root, framework + "/" + name);
  }

  /** A store-relative path ({@code "onnx/mnist-12.onnx"}) under {@code root}; never outside it. */
  public static Path resolve(Path root, String relative) {
    if (relative == null || relative.isEmpty()) {
      throw new IllegalArgumentException("empty store path");
    }
    if (relative.startsWith("/") || relative.startsWith("\\") || relative.contains("\0")) {
      throw new IllegalArgumentException("store path must be relative: " + relative);
    }
    for (String part : relative.split("[/\\\\]")) {
      if (part.isEmpty() || part.equals(".") || part.equals("..")) {
        throw new IllegalArgumentException("store path has an empty, '.' or '..' part: " + relative);
      }
    }
    Path base = root.toAbsolutePath().normalize();
    Path resolved = base.resolve(Paths.get(relative)).normalize();
    if (!resolved.startsWith(base)) {
      throw new IllegalArgumentException("store path escapes the store: " + relative);
    }
    return resolved;
  }
}
