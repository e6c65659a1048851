package org.modelhub.dl4j;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.google.gson.stream.JsonReader;

import java.io.FileNotFoundException;
import java.io.StringReader;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.function.Consumer;

import org.deeplearning4j.nn.graph.ComputationGraph;
import org.deeplearning4j.nn.modelimport.keras.Hdf5Archive;
import org.deeplearning4j.nn.modelimport.keras.KerasModelImport;
import org.deeplearning4j.nn.multilayer.MultiLayerNetwork;
import org.nd4j.autodiff.samediff.SameDiff;
import org.nd4j.linalg.api.buffer.DataType;
import org.nd4j.linalg.api.ndarray.INDArray;
import org.nd4j.linalg.factory.Nd4j;
import org.nd4j.samediff.frameworkimport.onnx.importer.OnnxFrameworkImporter;
import org.nd4j.samediff.frameworkimport.tensorflow.importer.TensorflowFrameworkImporter;

/** One job: import with DL4J's own importer, run on the fixture's inputs, compare. */
final class JobRunner {

  /**
   * How SameDiff importers get their {@code dynamicVariables}: {@code fixture} (default: the
   * fixture's inputs, by graph input name), {@code none} (an empty map) or {@code suggest} (the
   * importer's own {@code suggestDynamicVariables}: ones of the declared input shapes).
   */
  static final String DYNAMIC_PROPERTY = "modelhub.dl4j.dynamic";

  /** When set to a folder, each job's actual outputs are written there as {@code ID.output_N.npy}. */
  static final String DUMP_PROPERTY = "modelhub.dl4j.dump";

  private JobRunner() {}

  /** Resident memory of this process in bytes (JavaCPP's reading of the OS), or -1. */
  static long residentBytes() {
    try {
      return org.bytedeco.javacpp.Pointer.physicalBytes();
    } catch (Throwable t) {
      return -1;
    }
  }

  /** An imported model that maps the fixture's inputs to outputs, in the job's order. */
  interface Imported {
    List<INDArray> run(List<INDArray> inputs);
  }

  /** Runs one job; never throws. {@code onStage} hears each stage as it is entered. */
  static Harness.Result run(Path store, Harness.Job job, Consumer<String> onStage) {
    long t0 = System.nanoTime();
    Harness.Result r = new Harness.Result(job.id);
    try {
      Path model = StorePaths.resolve(store, job.path);
      if (!Files.isRegularFile(model)) {
        throw new FileNotFoundException("no staged file " + model);
      }
      Map<String, Npz.Array> fixture = Npz.read(StorePaths.resolve(store, job.fixture).toFile());
      List<Npz.Array> inputs = Npz.numbered(fixture, "input", job.inputs.size());
      List<Npz.Array> expected = Npz.numbered(fixture, "output", job.outputs.size());

      List<INDArray> feeds = new ArrayList<>();
      for (Npz.Array a : inputs) {
        feeds.add(a.toINDArray());
      }
      Imported imported;
      switch (job.format) {
        case "onnx":
          imported = importSameDiff(new OnnxFrameworkImporter(), model, job, feeds);
          break;
        case "pb":
          imported = importSameDiff(new TensorflowFrameworkImporter(), model, job, feeds);
          break;
        case "h5":
        case "hdf5":
          imported = importKeras(model);
          break;
        default:
          throw new IllegalArgumentException(
              "unsupported format " + job.format + " (onnx, pb or h5)");
      }

      r.stage = "run";
      onStage.accept(r.stage);
      List<INDArray> actual = imported.run(feeds);
      if (actual.size() != expected.size()) {
        throw new IllegalStateException(
            "the model returned " + actual.size() + " outputs, expected " + expected.size());
      }
      dump(job.id, actual);

      r.stage = "compare";
      onStage.accept(r.stage);
      double worst = 0.0;
      for (int i = 0; i < expected.size(); i++) {
        worst = Math.max(worst, maxAbsDiff(i, job.outputs.get(i), actual.get(i), expected.get(i)));
      }
      r.maxAbsDiff = worst;
      if (worst <= job.tolerance) {
        r.ok = true;
        r.stage = "done";
      } else {
        r.error =
            String.format(
                Locale.ROOT, "max |diff| %.6g exceeds the tolerance %.3g", worst, job.tolerance);
      }
    } catch (Throwable t) { // one job never stops the others, whatever it threw
      r.ok = false;
      r.error = Harness.firstLine(t);
      System.err.println("[dl4j-harness] " + job.id + " failed at " + r.stage + ":");
      t.printStackTrace(System.err);
      r.outOfMemory = t instanceof OutOfMemoryError;
    } finally {
      r.seconds = (System.nanoTime() - t0) / 1e9;
    }
    return r;
  }

  private static void dump(String id, List<INDArray> actual) throws java.io.IOException {
    String dir = System.getProperty(DUMP_PROPERTY);
    if (dir == null) {
      return;
    }
    Files.createDirectories(Paths.get(dir));
    for (int i = 0; i < actual.size(); i++) {
      if (actual.get(i) != null) {
        String name = id.replaceAll("[^A-Za-z0-9._-]", "_") + ".output_" + i + ".npy";
        Nd4j.writeAsNumpy(
            actual.get(i).castTo(DataType.DOUBLE).dup('c'), Paths.get(dir, name).toFile());
      }
    }
  }

  // ---------------------------------------------------------------- SameDiff (ONNX, TF GraphDef)

  /** The SameDiff variable name of a graph tensor name: TF's {@code :0} suffix dropped. */
  static String sdName(String tensor) {
    return tensor.endsWith(":0") ? tensor.substring(0, tensor.length() - 2) : tensor;
  }

  static Imported importSameDiff(Object importer, Path model, Harness.Job job, List<INDArray> feeds)
      throws Throwable {
    List<String> inNames = new ArrayList<>();
    for (String n : job.inputs) {
      inNames.add(sdName(n));
    }
    List<String> outNames = new ArrayList<>();
    for (String n : job.outputs) {
      outNames.add(sdName(n));
    }
    Map<String, INDArray> dynamic = new LinkedHashMap<>();
    String mode = System.getProperty(DYNAMIC_PROPERTY, "fixture");
    if (mode.equals("fixture")) {
      for (int i = 0; i < inNames.size(); i++) {
        dynamic.put(inNames.get(i), feeds.get(i));
      }
    }
    SameDiff sd = runImport(importer, model.toString(), dynamic, mode.equals("suggest"));
    String skipped = job.format.equals("onnx") ? unnamedOnnxNodes(model) : "";
    return inputs -> {
      for (String n : inNames) {
        if (!sd.hasVariable(n)) {
          throw new IllegalArgumentException(
              "the imported graph has no input variable '" + n + "' (inputs: " + sd.inputs() + ")");
        }
      }
      for (String n : outNames) {
        if (!sd.hasVariable(n)) {
          throw new IllegalArgumentException(
              "the imported graph has no output variable '" + n + "' (outputs: " + sd.outputs()
                  + ")" + skipped);
        }
      }
      Map<String, INDArray> placeholders = new LinkedHashMap<>();
      for (int i = 0; i < inNames.size(); i++) {
        placeholders.put(inNames.get(i), inputs.get(i));
      }
      Map<String, INDArray> got = sd.output(placeholders, outNames);
      List<INDArray> out = new ArrayList<>();
      for (String n : outNames) {
        out.add(got.get(n));
      }
      return out;
    };
  }

  /**
   * Why an ONNX output can be missing: the importer skips nodes without a name ("Skipping node N
   * due to empty name" on stdout). Returns a clause for the error, or "".
   */
  static String unnamedOnnxNodes(Path model) {
    try (java.io.InputStream in = new java.io.BufferedInputStream(Files.newInputStream(model))) {
      onnx.Onnx.ModelProto proto = onnx.Onnx.ModelProto.parseFrom(in);
      int total = proto.getGraph().getNodeCount();
      long unnamed =
          proto.getGraph().getNodeList().stream().filter(n -> n.getName().isEmpty()).count();
      return unnamed == 0
          ? ""
          : "; the importer skipped the " + unnamed + " of " + total + " nodes that have no name";
    } catch (Exception | LinkageError e) {
      return "";
    }
  }

  /**
   * {@code FrameworkImporter.runImport}: 1.0.0-M2.1 has {@code (String, Map, boolean
   * suggestDynamicVariables)}; later sources add {@code boolean trackVariableChanges}. Called by
   * reflection so the harness works against either; the importer's own exception is rethrown.
   */
  static SameDiff runImport(
      Object importer, String path, Map<String, INDArray> dynamic, boolean suggest)
      throws Throwable {
    Method four = null;
    Method three = null;
    for (Method m : importer.getClass().getMethods()) {
      if (!m.getName().equals("runImport")) {
        continue;
      }
      Class<?>[] p = m.getParameterTypes();
      if (p.length == 4 && p[0] == String.class && Map.class.isAssignableFrom(p[1])) {
        four = m;
      } else if (p.length == 3 && p[0] == String.class && Map.class.isAssignableFrom(p[1])) {
        three = m;
      }
    }
    try {
      if (four != null) {
        return (SameDiff) four.invoke(importer, path, dynamic, suggest, false);
      }
      if (three != null) {
        return (SameDiff) three.invoke(importer, path, dynamic, suggest);
      }
    } catch (InvocationTargetException e) {
      throw e.getCause();
    }
    throw new NoSuchMethodException(importer.getClass().getName() + ".runImport");
  }

  // ---------------------------------------------------------------- Keras (.h5)

  static Imported importKeras(Path model) throws Exception {
    String className = kerasClassName(model);
    if ("Sequential".equals(className)) {
      MultiLayerNetwork net =
          KerasModelImport.importKerasSequentialModelAndWeights(model.toString());
      return inputs -> {
        if (inputs.size() != 1) {
          throw new IllegalArgumentException(
              "a Sequential model takes one input, got " + inputs.size());
        }
        return List.of(net.output(asFloat(inputs.get(0)), false));
      };
    }
    ComputationGraph graph = KerasModelImport.importKerasModelAndWeights(model.toString());
    return inputs -> {
      INDArray[] in = new INDArray[inputs.size()];
      for (int i = 0; i < in.length; i++) {
        in[i] = asFloat(inputs.get(i));
      }
      return Arrays.asList(graph.output(false, in));
    };
  }

  /** {@code model_config.class_name} of a Keras full-model .h5, or null when unreadable. */
  static String kerasClassName(Path model) {
    try (Hdf5Archive archive = new Hdf5Archive(model.toString())) {
      if (!archive.hasAttribute("model_config")) {
        return null;
      }
      // The attribute comes back with trailing bytes after the JSON document: read the first value.
      JsonReader reader =
          new JsonReader(new StringReader(archive.readAttributeAsJson("model_config")));
      reader.setLenient(true);
      JsonObject cfg = new JsonParser().parse(reader).getAsJsonObject();
      return cfg.has("class_name") ? cfg.get("class_name").getAsString() : null;
    } catch (Exception e) {
      System.err.println(
          "[dl4j-harness] cannot read model_config of " + model + ": " + Harness.firstLine(e));
      return null; // the importer will report what is wrong with the file
    }
  }

  private static INDArray asFloat(INDArray a) {
    return a.dataType() == DataType.FLOAT ? a : a.castTo(DataType.FLOAT);
  }

  // ---------------------------------------------------------------- comparison

  static double maxAbsDiff(int index, String name, INDArray actual, Npz.Array expected) {
    if (actual == null) {
      throw new IllegalStateException(
          "output " + index + " (" + name + "): the model returned null");
    }
    long[] shape = actual.shape();
    if (!Arrays.equals(shape, expected.shape)) {
      throw new IllegalStateException(
          "output " + index + " (" + name + "): shape " + Arrays.toString(shape)
              + " != the source's " + Arrays.toString(expected.shape));
    }
    double[] want = expected.toDoubles();
    double[] got =
        want.length == 0
            ? new double[0]
            : actual.castTo(DataType.DOUBLE).dup('c').data().asDouble();
    double worst = 0.0;
    for (int i = 0; i < want.length; i++) {
      if (Double.isNaN(want[i]) && Double.isNaN(got[i])) {
        continue;
      }
      double d = Math.abs(got[i] - want[i]);
      if (Double.isNaN(d) || Double.isInfinite(d)) {
        if (want[i] == got[i]) { // the same infinity
          continue;
        }
        throw new IllegalStateException(
            "output " + index + " (" + name + "): " + got[i] + " where the source has " + want[i]
                + " (flat index " + i + ")");
      }
      worst = Math.max(worst, d);
    }
    return worst;
  }
}
