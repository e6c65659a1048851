package org.modelhub.dl4j;

import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Enumeration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.zip.ZipEntry;
import java.util.zip.ZipFile;

import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;

/**
 * Reads the parity fixtures: an .npz written by {@code numpy.savez} (a zip of .npy files).
 *
 * <p>Pure Java on purpose: the fixture is read before (and independently of) the ND4J native
 * backend, so a broken backend shows up as a job error at the import stage, never as an unreadable
 * fixture. Supports the .npy format versions 1.0-3.0, C and Fortran order, little/big endian and
 * the dtypes modelhub writes (float16/32/64, int8/16/32/64, uint8, bool).
 */
public final class Npz {

  private static final Pattern DESCR = Pattern.compile("'descr'\\s*:\\s*'([^']+)'");
  private static final Pattern FORTRAN = Pattern.compile("'fortran_order'\\s*:\\s*(True|False)");
  private static final Pattern SHAPE = Pattern.compile("'shape'\\s*:\\s*\\(([^)]*)\\)");

  private Npz() {}

  /** One array: dtype, shape and its raw little-/big-endian bytes. */
  public static final class Array {
    public final String name;
    /** numpy dtype string without byte-order mark, e.g. {@code f4}, {@code i8}, {@code b1}. */
    public final String kind;

    public final long[] shape;
    public final boolean fortranOrder;
    private final ByteBuffer data;

    Array(String name, String kind, long[] shape, boolean fortranOrder, ByteBuffer data) {
      this.name = name;
      this.kind = kind;
      this.shape = shape;
      this.fortranOrder = fortranOrder;
      this.data = data;
    }

    public long length() {
      long n = 1;
      for (long d : shape) {
        n *= d;
      }
      return n;
    }

    /** The values, in C order, as doubles (for comparison). */
    public double[] toDoubles() {
      int n = Math.toIntExact(length());
      double[] out = new double[n];
      ByteBuffer b = data.duplicate().order(data.order());
      for (int i = 0; i < n; i++) {
        out[i] = read(b, i);
      }
      return fortranOrder ? fortranToC(out, shape) : out;
    }

    private double read(ByteBuffer b, int i) {
      switch (kind) {
        case "f4":
          return b.getFloat(i * 4);
        case "f8":
          return b.getDouble(i * 8);
        case "f2":
          return halfToFloat(b.getShort(i * 2));
        case "i8":
          return b.getLong(i * 8);
        case "i4":
          return b.getInt(i * 4);
        case "i2":
          return b.getShort(i * 2);
        case "i1":
          return b.get(i);
        case "u1":
          return b.get(i) & 0xff;
        case "b1":
          return b.get(i) != 0 ? 1 : 0;
        default:
          throw new IllegalStateException("unsupported dtype " + kind);
      }
    }

    /** An ND4J array with the same dtype (float16 widened to float32) and shape, C order. */
    public INDArray toINDArray() {
      int n = Math.toIntExact(length());
      double[] values = toDoubles();
      INDArray flat;
      switch (kind) {
        case "f4":
        case "f2":
          {
            float[] v = new float[n];
            for (int i = 0; i < n; i++) {
              v[i] = (float) values[i];
            }
            flat = Nd4j.createFromArray(v);
            break;
          }
        case "f8":
          flat = Nd4j.createFromArray(values);
          break;
        case "i8":
          {
            // Exact: read the longs again rather than through doubles.
            long[] v = new long[n];
            ByteBuffer b = data.duplicate().order(data.order());
            for (int i = 0; i < n; i++) {
              v[i] = b.getLong(i * 8);
            }
            if (fortranOrder) {
              v = fortranToC(v, shape);
            }
            flat = Nd4j.createFromArray(v);
            break;
          }
        case "i4":
          {
            int[] v = new int[n];
            for (int i = 0; i < n; i++) {
              v[i] = (int) values[i];
            }
            flat = Nd4j.createFromArray(v);
            break;
          }
        case "i2":
          {
            short[] v = new short[n];
            for (int i = 0; i < n; i++) {
              v[i] = (short) values[i];
            }
            flat = Nd4j.createFromArray(v);
            break;
          }
        case "i1":
        case "u1":
          {
            byte[] v = new byte[n];
            for (int i = 0; i < n; i++) {
              v[i] = (byte) values[i];
            }
            flat = Nd4j.createFromArray(v);
            if (kind.equals("u1")) {
              flat = flat.castTo(DataType.UINT8);
            }
            break;
          }
        case "b1":
          {
            boolean[] v = new boolean[n];
            for (int i = 0; i < n; i++) {
              v[i] = values[i] != 0;
            }
            flat = Nd4j.createFromArray(v);
            break;
          }
        default:
          throw new IllegalStateException("unsupported dtype " + kind);
      }
      if (shape.length == 0) {
        return flat.reshape(new long[0]);
      }
      return flat.reshape('c', shape);
    }

    @Override
    public String toString() {
      return name + " " + kind + java.util.Arrays.toString(shape);
    }
  }

  /** All arrays of the .npz, keyed by name without the {@code .npy} suffix, in file order. */
  public static Map<String, Array> read(java.io.File file) throws IOException {
    Map<String, Array> out = new LinkedHashMap<>();
    try (ZipFile zip = new ZipFile(file)) {
      Enumeration<? extends ZipEntry> entries = zip.entries();
      while (entries.hasMoreElements()) {
        ZipEntry entry = entries.nextElement();
        String name = entry.getName();
        if (entry.isDirectory() || !name.endsWith(".npy")) {
          continue;
        }
        String key = name.substring(0, name.length() - 4);
        try (InputStream in = zip.getInputStream(entry)) {
          out.put(key, readNpy(key, in.readAllBytes()));
        }
      }
    }
    return out;
  }

  /** The arrays {@code prefix_0, prefix_1, ...} in order; fails when fewer than {@code count}. */
  public static List<Array> numbered(Map<String, Array> arrays, String prefix, int count) {
    List<Array> out = new ArrayList<>();
    for (int i = 0; i < count; i++) {
      Array a = arrays.get(prefix + "_" + i);
      if (a == null) {
        throw new IllegalArgumentException(
            "fixture has no array " + prefix + "_" + i + " (has " + arrays.keySet() + ")");
      }
      out.add(a);
    }
    return out;
  }

  static Array readNpy(String name, byte[] bytes) throws IOException {
    if (bytes.length < 10
        || (bytes[0] & 0xff) != 0x93
        || !new String(bytes, 1, 5, StandardCharsets.US_ASCII).equals("NUMPY")) {
      throw new IOException(name + ".npy: not an .npy array (bad magic)");
    }
    int major = bytes[6] & 0xff;
    ByteBuffer le = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
    int headerLen;
    int offset;
    if (major == 1) {
      headerLen = le.getShort(8) & 0xffff;
      offset = 10;
    } else if (major == 2 || major == 3) {
      headerLen = le.getInt(8);
      offset = 12;
    } else {
      throw new IOException(name + ".npy: unsupported .npy version " + major);
    }
    String header =
        new String(
            bytes, offset, headerLen, major == 3 ? StandardCharsets.UTF_8 : StandardCharsets.ISO_8859_1);
    String descr = group(DESCR, header, name);
    boolean fortran = group(FORTRAN, header, name).equals("True");
    String shapeText = group(SHAPE, header, name).trim();
    List<Long> dims = new ArrayList<>();
    for (String part : shapeText.split(",")) {
      if (!part.isBlank()) {
        dims.add(Long.parseLong(part.trim()));
      }
    }
    long[] shape = dims.stream().mapToLong(Long::longValue).toArray();
    char order = descr.charAt(0);
    String kind = (order == '<' || order == '>' || order == '|' || order == '=') ? descr.substring(1) : descr;
    int itemSize;
    switch (kind) {
      case "f8":
      case "i8":
        itemSize = 8;
        break;
      case "f4":
      case "i4":
        itemSize = 4;
        break;
      case "f2":
      case "i2":
        itemSize = 2;
        break;
      case "i1":
      case "u1":
      case "b1":
        itemSize = 1;
        break;
      default:
        throw new IOException(name + ".npy: unsupported dtype " + descr);
    }
    long count = 1;
    for (long d : shape) {
      count *= d;
    }
    int start = offset + headerLen;
    long need = count * itemSize;
    if (bytes.length - start < need) {
      throw new IOException(
          name + ".npy: truncated (" + (bytes.length - start) + " bytes, need " + need + ")");
    }
    ByteBuffer data =
        ByteBuffer.wrap(bytes, start, (int) need)
            .slice()
            .order(order == '>' ? ByteOrder.BIG_ENDIAN : ByteOrder.LITTLE_ENDIAN);
    return new Array(name, kind, shape, fortran, data);
  }

  private static String group(Pattern p, String header, String name) throws IOException {
    Matcher m = p.matcher(header);
    if (!m.find()) {
      throw new IOException(name + ".npy: header lacks " + p.pattern() + ": " + header.trim());
    }
    return m.group(1);
  }

  private static float halfToFloat(short h) {
    int bits = h & 0xffff;
    int sign = (bits & 0x8000) << 16;
    int exp = (bits >>> 10) & 0x1f;
    int mant = bits & 0x3ff;
    if (exp == 0) {
      float v = mant * (float) Math.pow(2, -24);
      return sign != 0 ? -v : v;
    }
    if (exp == 31) {
      return Float.intBitsToFloat(sign | 0x7f800000 | (mant << 13));
    }
    return Float.intBitsToFloat(sign | ((exp + 112) << 23) | (mant << 13));
  }

  /** Reorders Fortran-order (column-major) values into C order. */
  static double[] fortranToC(double[] f, long[] shape) {
    double[] c = new double[f.length];
    int[] idx = new int[shape.length];
    for (int ci = 0; ci < f.length; ci++) {
      c[ci] = f[fortranIndex(idx, shape)];
      increment(idx, shape);
    }
    return c;
  }

  static long[] fortranToC(long[] f, long[] shape) {
    long[] c = new long[f.length];
    int[] idx = new int[shape.length];
    for (int ci = 0; ci < f.length; ci++) {
      c[ci] = f[fortranIndex(idx, shape)];
      increment(idx, shape);
    }
    return c;
  }

  private static int fortranIndex(int[] idx, long[] shape) {
    long fi = 0;
    long stride = 1;
    for (int d = 0; d < shape.length; d++) {
      fi += idx[d] * stride;
      stride *= shape[d];
    }
    return (int) fi;
  }

  /** Advances a C-order multi-index (last axis fastest). */
  private static void increment(int[] idx, long[] shape) {
    for (int d = shape.length - 1; d >= 0; d--) {
      if (++idx[d] < shape[d]) {
        return;
      }
      idx[d] = 0;
    }
  }
}
